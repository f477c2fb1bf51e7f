"""Any SQL database through SQLAlchemy (PostgreSQL, MySQL, SQLite; Snowflake or BigQuery when the
user installs their SQLAlchemy dialect): a table or a query per canonical table, streamed in
batches with a server-side cursor, incremental on a cursor column when one is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import Field, SecretStr, model_validator

from tieout.sources.connectors import MAIN, Connector, ConnectorOptions, PullContext, Stream, register_connector
from tieout.sources.retry import AuthFailure, Refused, TransientError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
# SQLSTATE classes: 28 = invalid authorization, 42501 = insufficient privilege; 08 = connection exception
_AUTH_STATES = ("28", "42501")
_TRANSIENT_STATES = ("08", "53", "57P", "40001", "40P01")
# Connection-time refusals often carry no SQLSTATE in the driver's exception: known server wording.
_AUTH_WORDS = re.compile(r"authentication failed|role \S+ does not exist|no pg_hba\.conf entry|access denied|"
                         r"permission denied|login failed|invalid (?:user|password)", re.IGNORECASE)


class SqlOptions(ConnectorOptions):
    """`options:` of a SQL database source."""

    url: SecretStr = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:${DB_PASSWORD}@host/db.")
    query: str | None = Field(None, description="SELECT giving the rows (alternative to `from_table`).")
    from_table: str | None = Field(None, description="Table or view to read (schema.table allowed).")
    cursor_column: str | None = Field(None, description="Column that grows with each new or changed row "
                                      "(updated_at, id): later pulls read only rows past the stored cursor.")
    key: list[str] = Field(default_factory=list, description="Primary key columns: a re-read row replaces its "
                           "previous version. Needed with `cursor_column`.")
    batch_size: int = Field(10_000, ge=1, description="Rows fetched and written per batch (bounds memory).")

    @model_validator(mode="after")
    def _one_origin(self) -> SqlOptions:
        if (self.query is None) == (self.from_table is None):
            raise ValueError("give exactly one of `query` and `from_table`")
        if self.from_table is not None and not _IDENT.match(self.from_table):
            raise ValueError(f"from_table '{self.from_table}' is not a plain [schema.]table name (use `query`)")
        if self.cursor_column and not self.key:
            raise ValueError("`cursor_column` needs `key` (the columns that identify a row)")
        return self


_CURSOR_TYPES: dict[str, type] = {"int": int, "str": str}


def _encode_cursor(value: Any) -> dict[str, Any] | None:
    """A cursor value that survives JSON with its type, so it is bound back as the same type."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, bool | int):
        return {"type": "int", "value": int(value)}
    return {"type": "str", "value": str(value)}


def _decode_cursor(data: dict[str, Any]) -> Any:
    kind, value = data["type"], data["value"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return _CURSOR_TYPES[kind](value)


def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _classify(exc: Exception) -> Exception:
    """A DBAPI error as a retry decision: credentials stop, lost connections retry, SQL errors refuse."""
    from sqlalchemy import exc as sa_exc

    orig = getattr(exc, "orig", None)
    state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    text = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
    if state.startswith(_AUTH_STATES) or _AUTH_WORDS.search(text):
        return AuthFailure(text)
    if state.startswith(_TRANSIENT_STATES) or (isinstance(exc, sa_exc.OperationalError) and not state):
        return TransientError(f"database unavailable: {text}")
    return Refused(text)


class SqlConnector(Connector):
    name = "sql"
    doc = ("SQL database through SQLAlchemy: a table or query per canonical table, streamed in batches, "
           "incremental on a cursor column.")
    options_model = SqlOptions
    streams: ClassVar[Mapping[str, Stream]] = {
        "": Stream("", "rows of a table or query (set `table:`; columns mapped by name).", None, None,
                   amount_unit="major", date_formats=())}

    def main_key(self, ctx: PullContext) -> tuple[str, ...]:
        return tuple(ctx.options.key)

    def finalize_sql(self, ctx: PullContext, parts: Any) -> str:
        order = ", ".join(f'"{k}"' for k in ctx.options.key)
        return f"SELECT * FROM read_parquet({parts[MAIN]})" + (f" ORDER BY {order}" if order else "")

    def _select(self, opts: SqlOptions, after: Any) -> tuple[str, dict[str, Any]]:
        origin = f"({opts.query}) AS q" if opts.query else _quote(opts.from_table or "")
        sql = f"SELECT * FROM {origin}"
        params: dict[str, Any] = {}
        if opts.cursor_column:
            col = _quote(opts.cursor_column)
            if after is not None:
                sql += f" WHERE {col} > :after"
                params["after"] = after
            sql += f" ORDER BY {col}"
        return sql, params

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        opts: SqlOptions = ctx.options
        after = None
        if ctx.cursor and ctx.cursor.get("value") is not None:
            after = _decode_cursor(ctx.cursor["value"])
        sql, params = self._select(opts, after)
        engine = create_engine(opts.url.get_secret_value(), pool_pre_ping=False)
        newest = after

        def stream_rows() -> Any:
            nonlocal newest
            newest = after
            try:
                with engine.connect() as conn:
                    result = conn.execution_options(stream_results=True, yield_per=opts.batch_size).execute(
                        text(sql), params)
                    names = list(result.keys())
                    if opts.cursor_column and opts.cursor_column not in names:
                        raise Refused(f"cursor_column '{opts.cursor_column}' is not a column of the result "
                                      f"(columns: {', '.join(names)})")
                    ctx.sink.columns(MAIN, names)
                    # the size is explicit: without it SQLAlchemy 2.1 returned one partition of everything
                    for batch in result.partitions(opts.batch_size):
                        rows = [dict(zip(names, r, strict=True)) for r in batch]
                        if opts.cursor_column and rows:
                            top = max((r[opts.cursor_column] for r in rows if r[opts.cursor_column] is not None),
                                      default=None)
                            if top is not None and (newest is None or top > newest):
                                newest = top
                        ctx.sink.write(MAIN, rows)
                        if ctx.enough():
                            break
            except SQLAlchemyError as exc:
                raise _classify(exc) from None

        try:
            # A retry after a half-read result starts over: the scratch part is rewritten from scratch.
            ctx.call("reading the query", lambda: self._fresh(ctx, stream_rows))
        finally:
            engine.dispose()
        return {"column": opts.cursor_column, "value": _encode_cursor(newest)}

    @staticmethod
    def _fresh(ctx: PullContext, read: Any) -> None:
        ctx.sink.reset(MAIN)
        read()


register_connector(SqlConnector())
