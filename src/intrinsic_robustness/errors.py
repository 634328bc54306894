"""The one exception type for bad user input: its message is a single line naming the input and the fix."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from a user (argument, file, spec). The CLI prints it as one line and exits 2."""


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM, SIGHUP) asked the process to stop. Not an ``Exception``, so no handler of user
    errors swallows it; finished work is kept and the CLI exits 128 + the signal number (130 for Ctrl-C).
    ``stage`` and ``run_dir`` are filled in by the pipeline when it happens inside a stage."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        self.stage: str | None = None
        self.run_dir: str | None = None
        self.kept: str | None = None
        super().__init__(f"interrupted by {self.signal_name}")
