"""The one exception type of the data layer."""

from __future__ import annotations

from nlighten_tf.errors import NlightenError


class DataError(NlightenError, ValueError):
    """Bad data input: the message names the thing at fault and how to fix it, on one line.

    A ``ValueError`` so that callers validating arguments generically still catch it; the CLI
    prints ``str(error)`` and exits non-zero.
    """
