"""Connectors: sources pulled from a system's API or database rather than read from a file.

A connector (one module per system) declares its streams and an options model; `register_connector`
puts it in `CONNECTORS` and each stream in `FORMATS` as `<connector>.<stream>`, so a pulled snapshot
is read, mapped and quality-gated exactly like a file. This room runs a pull: cursor in, pages to
disk, merge, snapshot, cursor out. It never parses values and never renders anything.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from tieout.config import Config, SourceConfig
from tieout.errors import ConfigError
from tieout.sources.base import FORMATS, ISO_FORMATS, SourceFormat, register_format
from tieout.sources.credentials import Credentials, grants_text, install_log_redaction, redact, register_secret
from tieout.sources.retry import ConnectorError, RetryPolicy
from tieout.sources.snapshots import (
    PageSink,
    PullRecord,
    last_pull,
    merge_part,
    new_pull_id,
    publish,
    pull_record,
    sha256_of,
)
from tieout.sources.tabular import read_parquet

log = logging.getLogger("tieout.sources")
T = TypeVar("T")
MAIN = "main"  # the part every stream has; others (e.g. Stripe's payout links) enrich it


class ConnectorOptions(BaseModel):
    """Options every connector source accepts under `options:` (a connector adds its own)."""

    model_config = ConfigDict(extra="forbid")

    snapshot: str | None = Field(None, description="Pin a snapshot id (from `tieout sources pull` or the run's "
                                 "inputs): read it instead of pulling, to re-run exactly on the same data.")
    full_refresh: bool = Field(False, description="Pull everything on every run instead of only new or "
                               "changed records.")
    attempts: int = Field(5, ge=1, le=20, description="Tries per request on 429, 5xx or a garbled answer.")
    backoff_seconds: float = Field(1.0, ge=0, description="First wait between tries (doubles each time) "
                                   "when the server sends no Retry-After.")
    max_wait_seconds: float = Field(120.0, ge=0, description="Longest single wait, Retry-After included.")


@dataclass(frozen=True)
class Stream:
    """One object type a connector pulls, with its default mapping onto a canonical table."""

    name: str
    doc: str
    table: str | None
    record_id: str | None  # column naming a record in messages (API id, primary key)
    key: tuple[str, ...] = ()  # merge key of the main part: a changed record replaces its old version
    columns: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    amount_unit: str = "minor"
    date_formats: tuple[str, ...] = ("unix",)
    part_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # extra parts and their keys


@dataclass
class PullContext:
    """What a connector's `pull` gets: where to write, what it already has, how to call out."""

    source: str
    stream: Stream
    options: Any  # the connector's options model
    cursor: dict[str, Any] | None  # None: full pull
    sink: PageSink
    policy: RetryPolicy
    limit: int | None = None  # stop after about this many records (a connectivity test)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return self.policy.call(self.source, what, fn)

    def enough(self) -> bool:
        return self.limit is not None and self.sink.rows(MAIN) >= self.limit


_TZ_ABBREVIATION = re.compile(r"\s([A-Za-z]{2,5})$")
_FLAGGED: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # id(stream) -> (time columns, currency columns)


def _flagged_columns(stream: Stream) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The stream's source columns mapped onto canonical times (when it sends Unix seconds) and currencies."""
    found = _FLAGGED.get(id(stream))
    if found is None:
        from tieout.model import TABLES, Kind

        table = TABLES[stream.table] if stream.table else None
        kinds = {c.name: c.kind for c in table.columns} if table else {}
        mapped = [(kinds[k], v) for k, v in stream.columns.items() if isinstance(v, str) and k in kinds]
        unix = stream.date_formats == ("unix",)
        found = (tuple(v for kind, v in mapped if unix and kind in (Kind.TIMESTAMP, Kind.DATE)),
                 tuple(v for kind, v in mapped if kind is Kind.CURRENCY))
        _FLAGGED[id(stream)] = found
    return found


def flag_row(ctx: PullContext, row: dict[str, Any], declared_currencies: Sequence[str] = ()) -> None:
    """Name in advance what normalization will refuse in a row of an API that sends Unix seconds, so the
    quarantine says why: a time field holding text (a time zone abbreviation named), and a currency the
    source does not declare (emptied here, so the row is quarantined rather than read in that currency)."""
    stream = ctx.stream
    if stream.record_id is None:
        return
    times, currencies = _flagged_columns(stream)
    rid = str(row.get(stream.record_id) or "?")
    for column in times:
        value = row.get(column)
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            zone = _TZ_ABBREVIATION.search(value.strip())
            why = f" with the time zone abbreviation '{zone.group(1)}', which names no unique offset" if zone else ""
            ctx.sink.problem(rid, column, f"field '{column}' is text{why}; the API sends Unix seconds")
    if not declared_currencies:
        return
    declared = {c.lower() for c in declared_currencies}
    for column in currencies:
        value = row.get(column)
        if isinstance(value, str) and value.lower() not in declared:
            ctx.sink.problem(rid, column, f"currency '{value}' is not one the source declares "
                             f"({', '.join(declared_currencies)})")
            row[column] = None


class Connector:
    """Base of every connector: subclasses set the class attributes and implement `pull`."""

    name: ClassVar[str]
    doc: ClassVar[str]
    options_model: ClassVar[type[ConnectorOptions]] = ConnectorOptions
    streams: ClassVar[Mapping[str, Stream]]

    def pull(self, ctx: PullContext) -> dict[str, Any]:
        """Write the stream's pages to `ctx.sink`; return the new cursor (kept only if the pull completes)."""
        raise NotImplementedError

    def finalize_sql(self, ctx: PullContext, parts: Mapping[str, str]) -> str:
        """SELECT producing the snapshot from the merged parts (Parquet paths as SQL literals)."""
        order = ", ".join(f'"{k}"' for k in ctx.stream.key)
        return f"SELECT * FROM read_parquet({parts[MAIN]})" + (f" ORDER BY {order}" if order else "")

    def main_key(self, ctx: PullContext) -> tuple[str, ...]:
        return ctx.stream.key


CONNECTORS: dict[str, Connector] = {}
CONNECTOR_FORMATS: dict[str, tuple[Connector, Stream]] = {}


def format_name(connector: Connector, stream: Stream) -> str:
    return connector.name if not stream.name else f"{connector.name}.{stream.name}"


def register_connector(connector: Connector) -> Connector:
    """Register a connector and one source format per stream (read from its snapshots)."""
    if connector.name in CONNECTORS:
        raise ValueError(f"connector '{connector.name}' registered twice")
    CONNECTORS[connector.name] = connector
    for stream in connector.streams.values():
        name = format_name(connector, stream)
        register_format(SourceFormat(
            name=name, doc=f"{connector.doc.split('.')[0]} connector: {stream.doc}", reader=read_parquet,
            table=stream.table, system=connector.name.removesuffix("_api"), columns=stream.columns,
            constants=stream.constants, value_maps=stream.value_maps, amount_unit=stream.amount_unit,
            date_formats=stream.date_formats or ISO_FORMATS))
        CONNECTOR_FORMATS[name] = (connector, stream)
    return connector


def is_connector_source(src: SourceConfig) -> bool:
    return src.format in CONNECTOR_FORMATS


def connector_options(cfg: Config, index: int) -> ConnectorOptions:
    """The source's `options:` validated by its connector; secrets registered for redaction."""
    src = cfg.sources[index]
    connector, _ = CONNECTOR_FORMATS[src.format]
    try:
        opts = connector.options_model.model_validate(src.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ("sources", index, "options", *err["loc"])
        msg = "unknown option (not allowed here)" if err["type"] == "extra_forbidden" else err["msg"]
        dotted = ".".join(str(p) for p in loc)
        raise ConfigError(f"{cfg.where(loc)}: {dotted}: {msg} (connector '{connector.name}', "
                          f"see docs/connectors.md)") from None
    for name in type(opts).model_fields:
        value = getattr(opts, name)
        if isinstance(value, SecretStr):
            register_secret(value)
    install_log_redaction()
    return opts


def source_directory(cfg: Config, src: SourceConfig) -> Path:
    """Where a connector source keeps its cursor and snapshots (its `path:`)."""
    return cfg.resolve(src.path)


def pull_source(cfg: Config, index: int, *, full_refresh: bool = False, directory: Path | None = None,
                limit: int | None = None, sleep: Callable[[float], None] = time.sleep) -> tuple[PullRecord, PageSink]:
    """Pull one connector source: new or changed records since its cursor (everything on a full
    refresh), merged into its state and published as a new snapshot. On any failure nothing moves."""
    src = cfg.sources[index]
    connector, stream = CONNECTOR_FORMATS[src.format]
    opts = connector_options(cfg, index)
    target = directory or source_directory(cfg, src)
    target.mkdir(parents=True, exist_ok=True)
    previous = last_pull(target)
    full = full_refresh or opts.full_refresh or previous is None
    pull_id = new_pull_id()
    scratch = target / f".pull-{pull_id}"
    scratch.mkdir()
    sink = PageSink(scratch)
    policy = RetryPolicy(opts.attempts, opts.backoff_seconds, opts.max_wait_seconds, sleep=sleep)
    ctx = PullContext(src.name, stream, opts, None if full or previous is None else dict(previous.cursor), sink,
                      policy, limit)
    try:
        cursor = connector.pull(ctx)
        deltas = sink.close()
        unknown = set(sink.deleted_keys()) - set(deltas)
        if unknown:
            raise ValueError(f"deletions for parts the pull never declared: {sorted(unknown)}")
        record = _merge_and_snapshot(connector, ctx, target, scratch, previous, full, pull_id, cursor, deltas)
    except BaseException:
        sink.close_quietly()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    for p in sink.problems[:20]:
        log.warning("%s", redact(f"source '{src.name}': record {p.record}: {p.reason}"))
    return record, sink


def _merge_and_snapshot(connector: Connector, ctx: PullContext, target: Path, scratch: Path,
                        previous: PullRecord | None, full: bool, pull_id: str, cursor: dict[str, Any],
                        deltas: Mapping[str, Path]) -> PullRecord:
    import duckdb

    con = duckdb.connect()
    # Merging spills to disk rather than growing: a pull's memory stays bounded whatever its size.
    con.execute("SET enable_progress_bar = false")
    con.execute("SET memory_limit = '512MB'")
    con.execute(f"SET temp_directory = '{str(scratch / 'duckdb.tmp').replace(chr(39), chr(39) * 2)}'")
    try:
        states: dict[str, Path] = {}
        deleted = ctx.sink.deleted_keys()
        for part, delta in deltas.items():
            prev_state = None
            if not full and previous is not None and part in previous.parts:
                prev_state = target / previous.parts[part]
            key = connector.main_key(ctx) if part == "main" else ctx.stream.part_keys.get(part, ())
            states[part] = scratch / f"state-{part}.parquet"
            merge_part(con, prev_state, delta, key, states[part], deleted.get(part))
        snapshot = scratch / "snapshot.parquet"
        literals = {p: "'" + str(path).replace("'", "''") + "'" for p, path in states.items()}
        sql = connector.finalize_sql(ctx, literals)
        con.execute(f"COPY ({sql}) TO '{str(snapshot).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        row = con.execute(f"SELECT count(*) FROM read_parquet('{str(snapshot).replace(chr(39), chr(39) * 2)}')")
        records = int(row.fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    rel_snapshot = f"snapshots/{pull_id}.parquet"
    files = {rel_snapshot: snapshot, **{f"state/{pull_id}-{p}.parquet": s for p, s in states.items()}}
    record = PullRecord(
        pull_id=pull_id, connector=connector.name, stream=ctx.stream.name, mode="full" if full else "incremental",
        snapshot=rel_snapshot, sha256=sha256_of(snapshot), records=records, pulled=ctx.sink.rows(MAIN),
        cursor=cursor, parts={p: f"state/{pull_id}-{p}.parquet" for p in states}, problems=len(ctx.sink.problems),
        pulled_at=datetime.now(UTC).isoformat(timespec="seconds"),
        problem_details=[[p.record, p.field, p.reason] for p in ctx.sink.problems[:1000]],
        deleted=sum(ctx.sink.deletions(p) for p in deleted))
    return publish(target, scratch, record, files)


def pinned_snapshot(cfg: Config, index: int, pull_id: str) -> PullRecord:
    """A pinned snapshot, verified against the checksum recorded when it was pulled."""
    src = cfg.sources[index]
    directory = source_directory(cfg, src)
    record = pull_record(directory, pull_id)
    if record is None:
        raise ConnectorError(src.name, f"snapshot '{pull_id}' not found under {src.path}/snapshots "
                             "(options.snapshot names a pull id)")
    actual = sha256_of(directory / record.snapshot)
    if actual != record.sha256:
        raise ConnectorError(src.name, f"snapshot '{pull_id}' was modified after it was pulled (sha256 "
                             f"{actual[:12]}…, recorded {record.sha256[:12]}…)")
    return record


@dataclass
class ConnectorInputs:
    """A config whose connector sources point at their snapshots, and what each snapshot is."""

    config: Config
    snapshots: dict[str, tuple[SourceConfig, PullRecord, Path]]  # shown file -> source, pull, absolute path

    def annotate(self, inputs: list[dict[str, Any]], quarantined: list[dict[str, Any]]) -> None:
        """Record in the run's inputs which snapshot each connector source used, and name the API
        record (not only the snapshot row) in quarantine reasons."""
        for item in inputs:
            found = self.snapshots.get(item.get("file", ""))
            if found:
                src, record, _ = found
                item.update(snapshot=record.pull_id, connector=f"{record.connector}.{record.stream}".rstrip("."),
                            pull_mode=record.mode, snapshot_rows=record.records)
        by_file: dict[str, list[dict[str, Any]]] = {}
        for q in quarantined:
            if q.get("file") in self.snapshots:
                by_file.setdefault(q["file"], []).append(q)
        for shown, rows in by_file.items():
            src, record, path = self.snapshots[shown]
            _, stream = CONNECTOR_FORMATS[src.format]
            ids = _record_ids(path, stream.record_id or _sql_key(src))
            known: dict[str, list[str]] = {}
            for problem_record, _field, why in record.problem_details:
                known.setdefault(problem_record, []).append(why)
            for q in rows:
                line = q.get("line")
                ok = ids is not None and isinstance(line, int) and 0 <= line - 2 < len(ids)
                rid = ids[line - 2] if ok else None  # type: ignore[index,operator]
                if rid is not None:
                    detail = f" ({'; '.join(known[rid])})" if rid in known else ""
                    q["reason"] = f"record {rid}: {q['reason']}{detail}"


def _sql_key(src: SourceConfig) -> str | None:
    key = src.options.get("key")
    if isinstance(key, list) and key:
        return str(key[0])
    return str(key) if isinstance(key, str) else None


def _record_ids(path: Path, column: str | None) -> list[str | None] | None:
    import pyarrow.parquet as pq

    if column is None:
        return None
    try:
        return [None if v is None else str(v) for v in pq.read_table(path, columns=[column]).column(0).to_pylist()]
    except (KeyError, ValueError, OSError):
        return None


def pull_connectors(cfg: Config, progress: Callable[[str], None] | None = None, *,
                    full_refresh: bool = False) -> ConnectorInputs:
    """Pull every connector source (or take its pinned snapshot) before ingest; file sources pass
    through unchanged. The returned config reads each connector source from its snapshot.
    `full_refresh`: pull everything, not only what changed since each cursor (a pin still wins)."""
    say = progress or (lambda _msg: None)
    sources: list[SourceConfig] = []
    snapshots: dict[str, tuple[SourceConfig, PullRecord, Path]] = {}
    for i, src in enumerate(cfg.sources):
        if not is_connector_source(src):
            sources.append(src)
            continue
        opts = connector_options(cfg, i)
        if opts.snapshot:
            record = pinned_snapshot(cfg, i, opts.snapshot)
        else:
            say(f"pulling {src.name}" + (" (full refresh)" if full_refresh else ""))
            record, _ = pull_source(cfg, i, full_refresh=full_refresh)
        path = source_directory(cfg, src) / record.snapshot
        try:
            shown = str(path.relative_to(cfg.root))
        except ValueError:
            shown = str(path)
        snapshots[shown] = (src, record, path)
        sources.append(src.model_copy(update={"path": str(path)}))
    return ConnectorInputs(cfg.model_copy(update={"sources": sources}), snapshots)


__all__ = ["CONNECTORS", "CONNECTOR_FORMATS", "FORMATS", "Connector", "ConnectorInputs", "ConnectorOptions",
           "PullContext", "Stream", "connector_options", "flag_row", "pull_connectors", "pull_source",
           "register_connector"]


def reference_markdown() -> str:
    """The registry section of docs/connectors.md: every connector, its streams and its options."""
    lines: list[str] = []
    for c in CONNECTORS.values():
        lines += [f"### `{c.name}`", "", c.doc, ""]
        if issubclass(c.options_model, Credentials):
            lines += [f"Credentials (the first complete set is used): {grants_text(c.options_model.grants)}.", ""]
        lines += ["| `format:` | canonical table | what |", "|---|---|---|"]
        for s in c.streams.values():
            lines.append(f"| `{format_name(c, s)}` | {s.table or '(set `table:`)'} | {s.doc} |")
        lines += ["", "| option | default | meaning |", "|---|---|---|"]
        for name, f in c.options_model.model_fields.items():
            default = "required" if f.is_required() else f"`{f.get_default(call_default_factory=True)!r}`"
            lines.append(f"| `{name}` | {default} | {(f.description or '').replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)
