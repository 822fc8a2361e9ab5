"""User-facing errors: the command line prints their message as one line and exits with 2.

Raise :class:`XbyolError` (or a subclass) for anything the user can fix: a bad file, key
or value. The message is one line that names the file, key or value and says what was
expected. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations


class XbyolError(Exception):
    """Bad input from the user; ``str(e)`` is the one-line message shown by the CLI."""


class CheckpointError(XbyolError):
    """A checkpoint file is missing, truncated, unsafe to unpickle or holds non-finite values."""
