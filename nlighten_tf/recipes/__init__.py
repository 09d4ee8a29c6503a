"""Collaborative-optimization recipes: a YAML stage list, validated up front and run resumably.

`loader.load(path, overrides)` -> `Recipe` (raises `RecipeError` naming file, stage and key);
`runner.run(recipe, output_dir, resume=...)` executes it under `<output_dir>/<name>/`.
The schema is documented in recipes/README.md.
"""

from nlighten_tf.recipes.loader import load
from nlighten_tf.recipes.schema import Recipe, RecipeError, from_dict

__all__ = ["Recipe", "RecipeError", "from_dict", "load"]
