"""The project's error tree. Raised by every layer (simulators is the bottom layer, so the tree lives here and
the layers above import it); caught by the CLI (ama.cli), which turns an ``InputError`` into one line and exit code 2.

    AmaError                      anything AMA raises on purpose
    ├── InputError                bad input from a user or a file; a retry does not help, fixing the input does
    │   ├── ScenarioError         a scenario file is malformed (names the file, the field and the line)
    │   ├── TraceFormatError      a trace file is missing or has the wrong columns or values
    │   └── ConfigError           invalid settings or arguments (unknown controller, bad parameter)
    └── TransientError            an outside dependency failed (database gone, LLM timed out); a retry may help
"""

from __future__ import annotations

import os


class AmaError(Exception):
    """Base of every error AMA raises on purpose."""

    retry_helps = False


class InputError(AmaError):
    """Bad input from a user or a file. Fixing the input helps; retrying does not."""


class ScenarioError(InputError):
    """A scenario file is malformed. ``str(e)`` is ``"FILE:LINE: FIELD: problem"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str, field: str = "", line: int | None = None):
        self.path = str(path)
        self.field = field
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class TraceFormatError(InputError):
    """A trace file is missing or malformed. ``str(e)`` is ``"FILE: problem"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(InputError):
    """Invalid settings or command arguments."""


class TransientError(AmaError):
    """An outside dependency failed; retrying later may help."""

    retry_helps = True
