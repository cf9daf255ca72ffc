"""User-facing errors: one line that says what is wrong and what to do."""


class UserError(Exception):
    """Bad input or settings. The CLI prints `vepcli: error: <message>` and exits 1."""


class Terminated(BaseException):
    """SIGTERM (a batch scheduler's time limit, a cancelled pipeline job), raised in the main thread as
    Ctrl-C raises KeyboardInterrupt, so that a run ends the same way: one line, its resume folder kept,
    its temporary files removed. A BaseException, so that no `except Exception` swallows it."""
