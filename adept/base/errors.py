"""User-facing errors.

An :class:`AdeptError` is bad input the user can fix. The CLI prints its message as one line and
exits with status 2, without a traceback; library callers catch it like any exception.
"""

import sys


class AdeptError(Exception):
    """Bad input: the message names the problem and how to fix it, on one line."""


def warn(message: str) -> None:
    """A one-line warning on stderr (``adept: warning: ...``): something was repaired or
    redone, and the user should know."""
    print(f"adept: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """A one-line note on stderr (``adept: note: ...``): how the run goes about its work."""
    print(f"adept: note: {message}", file=sys.stderr)
