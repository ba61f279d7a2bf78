"""One exception type for every user-facing failure, so the CLI and rules can print one line."""


class TransmodError(Exception):
    """Bad input: the message names the file or option and says what to do."""
