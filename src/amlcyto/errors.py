"""The one exception type the command line turns into a one-line error message."""


class AmlcytoError(Exception):
    """A problem the user can fix: the message names the file or value and says how to fix it."""
