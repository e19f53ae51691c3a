"""The errors a user can fix. The CLI prints their message on one line (it names the key, file or row)
and exits with status 2; set AFD_DEBUG=1 (or hydra.verbose=true) to see the traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: a config value, a file, a row or a model source. The message says which and why."""
