"""The errors a user can act on, shared by every layer (nothing here imports the package).

The CLI prints their message on one line, without a traceback, and exits with ``exit_code``:
raise them wherever the cause is a setting, a file or a run directory the user controls.

>>> raise RunConflict("runs/x holds a split made with split.test_fraction 0.2; this command asks 0.1")
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings: a one-line message, exit status 2."""

    exit_code = 2


class DataRejected(UserError):
    """Validation found problems and the configuration asked for strictness (exit status 1)."""

    exit_code = 1


class RunConflict(UserError, ValueError):
    """A run directory holds work made with other settings than this command asks for; going on
    would mix the two. The message names each differing setting and how to start fresh."""
