"""One error type for bad input: launch.py prints its message as one line and exits 2."""


class MMCError(Exception):
    """A bad input or state the user can fix; the message names the problem and the fix."""
