"""User-facing errors.

An :class:`AdeptError` is bad input the user can fix. The CLI prints its message as one line and
exits with status 2, without a traceback; library callers catch it like any exception.
"""


class AdeptError(Exception):
    """Bad input: the message names the problem and how to fix it, on one line."""
