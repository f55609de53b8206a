"""The exception types the command line turns into a one-line error message, and the command
a message suggests."""

import shlex


class AmlcytoError(Exception):
    """A problem the user can fix: the message names the file or value and says how to fix it."""

    exit_code = 2


class Interrupted(AmlcytoError):
    """The user stopped the command (Ctrl-C, SIGINT); the message says what was kept."""

    exit_code = 130


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (what fits in a one-line error), or the name of
    its type when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def command_line(template: str, *values: object) -> str:
    """A command for a message to suggest, in backticks, ready to paste into a shell: each
    ``{}`` of ``template`` is a value, quoted where a shell needs it (``amlcyto quantize {}``
    with ``odd out ü/ft run2`` gives amlcyto quantize 'odd out ü/ft run2')."""
    return "`" + template.format(*(shlex.quote(str(value)) for value in values)) + "`"
