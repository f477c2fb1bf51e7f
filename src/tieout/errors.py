"""Errors users see, and the exit codes they map to (a contract, see docs/cli.md).

Row-level problems are never raised: they are quarantined as data (see `quality`). What is raised
here stops a run: bad config, an unreadable file, a failing query.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every `tieout` command."""

    CLEAN = 0
    FINDINGS = 1
    BAD_INPUT = 2
    INTERNAL = 3


class TieoutError(Exception):
    """Base class: `str(error)` starts with one line a user can act on."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(TieoutError):
    """`tieout.yaml` is invalid; the message names the file, line and key path."""

    exit_code = ExitCode.BAD_INPUT


class InputError(TieoutError):
    """An input file cannot be read at all (as opposed to a bad row, which is quarantined)."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, file: str, message: str, line: int | None = None, column: str | None = None):
        where = file if line is None else f"{file}:{line}"
        col = f" column '{column}':" if column else ""
        super().__init__(f"{where}:{col} {message}")
        self.file = file
        self.line = line
        self.column = column


class QueryError(TieoutError):
    """A query failed on the engine; carries the compiled SQL so it can be reproduced."""

    def __init__(self, step: str, cause: Exception, sql: str | None = None):
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        text = f"{step} failed on the engine: {first}"
        if sql:
            text += f"\n--- compiled SQL ---\n{sql}"
        super().__init__(text)
        self.sql = sql


class StoreError(TieoutError):
    """The findings store refused an operation (unknown id, store not initialised...)."""

    exit_code = ExitCode.BAD_INPUT
