"""One error type for bad input: launch.py prints its message as one line and exits 2."""


class MMCError(Exception):
    """A bad input or state the user can fix; the message names the problem and the fix."""


def first_line(error: BaseException) -> str:
    """The first line of a library's error message (its type when it has none), to quote in an MMCError."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
