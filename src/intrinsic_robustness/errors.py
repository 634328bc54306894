"""The one exception type for bad user input: its message is a single line naming the input and the fix."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from a user (argument, file, spec). The CLI prints it as one line and exits 2."""
