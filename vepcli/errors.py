"""User-facing errors: one line that says what is wrong and what to do."""


class UserError(Exception):
    """Bad input or settings. The CLI prints `vepcli: error: <message>` and exits 1."""
