"""Auto-compression to a budget: `budgets` (what a model must fit) and `search` (the per-group
channel search driven by measured cost). A package above `optimize`, `export`, `bench` and
`edgetpu`, because measuring a budget exports files and times them on a device."""
