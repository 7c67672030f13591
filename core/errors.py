"""The errors a user can act on. The CLI prints any `InstructlakeError` as one line and exits
with status 2; anything else is a bug and keeps its traceback."""
from __future__ import annotations

from typing import Iterator, Optional


class InstructlakeError(RuntimeError):
    """A problem with the input, the conf or the environment; the message says what and how to fix it."""


class ConfigError(InstructlakeError, ValueError):
    """A configuration problem; `key` is the dotted key, `origin` the file (or `--set`)."""

    def __init__(self, key: str, message: str, origin: str | None = None):
        self.key = key
        self.message = message
        self.origin = origin
        where = f"{origin}: " if origin else ""
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class InputNotFoundError(InstructlakeError, FileNotFoundError):
    """An input path of the conf matches no file."""


class MissingTableError(InstructlakeError):
    """A stage needs a table an earlier stage writes; the message names the stage to run."""


class DeltaUnavailableError(InstructlakeError):
    """The Spark session has no Delta Lake."""


class IngestCheckError(InstructlakeError):
    """Rows read and rows written disagree for a file: a bug, never silently accepted."""


class GenerationError(InstructlakeError):
    """The generation stage cannot go on (a prompt file, the model, the endpoint, the sandbox)."""


class ScorerUnavailableError(InstructlakeError, FileNotFoundError):
    """A model, its files or its packages are missing."""


class FetchError(InstructlakeError):
    """A source file could not be downloaded or verified."""


class DiskFullError(InstructlakeError):
    """A stage filled the file system it writes to; the message names the folder and the space it had."""


def causes(error: Optional[BaseException]) -> Iterator[BaseException]:
    """`error`, then each exception it was raised from or during (`__cause__`, else `__context__`)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
