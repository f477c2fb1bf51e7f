"""A rule that cannot load or run: data naming the rule, its file and line, so one bad rule is
reported while the other checks still run (a failure is returned, not raised, until the caller
decides how the run ends).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from tieout.errors import ExitCode, TieoutError


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: rule '{self.rule}': {self.message}"


class RuleError(TieoutError):
    """A rule failed; the first line names the rule, its file and line."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, failure: RuleFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def line_in(exc: BaseException, file: str, default: int | None) -> int | None:
    """The last line of `file` in the traceback of `exc` (where a rule raised), else `default`."""
    if isinstance(exc, SyntaxError) and exc.filename == file:
        return exc.lineno
    found = default
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == file:
            found = frame.lineno
    return found


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
