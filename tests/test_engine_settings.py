"""The DuckDB engine's settings (`duckdb:` in tieout.yaml) and lazily parsed CSV files."""

from __future__ import annotations

import os
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tieout.config import parse_config
from tieout.engines import create_engine
from tieout.engines.duckdb import default_memory_limit
from tieout.errors import ConfigError, InputError
from tieout.pipeline import run

HEADER = "payment_id,customer_id,type,method,amount,currency,received_at\n"


def _setting(engine: object, name: str) -> str:
    con = engine.con  # type: ignore[attr-defined]
    return str(con.raw_sql(f"SELECT current_setting('{name}')").fetchone()[0])


def test_settings_from_the_config_reach_duckdb(tmp_path: Path) -> None:
    cfg = parse_config("duckdb:\n  memory_limit: 1GB\n  threads: 1\n  temp_directory: spill\n",
                       tmp_path / "tieout.yaml")
    (tmp_path / "spill").mkdir()
    engine = create_engine("duckdb", cfg)
    try:
        assert _setting(engine, "threads") == "1"
        assert _setting(engine, "memory_limit") in ("1.0 GiB", "953.6 MiB")  # DuckDB shows GB as MiB/GiB
        spill = Path(_setting(engine, "temp_directory"))
        assert spill.parent == tmp_path / "spill" and spill.is_dir()
    finally:
        engine.close()
    assert not spill.exists()  # the run's spill directory goes with the engine


def test_tables_past_the_memory_limit_spill_to_the_temp_directory(tmp_path: Path) -> None:
    """The engine's tables live in a compressed in-memory database: past `memory_limit` their blocks
    go to `temp_directory`, they are not lost and the query does not fail."""
    cfg = parse_config("duckdb:\n  memory_limit: 64MB\n  threads: 1\n  temp_directory: spill\n",
                       tmp_path / "tieout.yaml")
    (tmp_path / "spill").mkdir()
    engine = create_engine("duckdb", cfg)
    try:
        con = engine.con  # type: ignore[attr-defined]
        assert con.raw_sql("SELECT current_database()").fetchall() == [("work",)]
        rows = ibis.range(3_000_000).unnest().name("i").as_table()
        scattered = (rows.i * 7919 % 1000003).cast("string")
        rows = rows.mutate(text=ibis.literal("row ") + rows.i.cast("string") + "/" + scattered)
        stored = engine.materialize("big", rows)
        spilled = con.raw_sql("SELECT sum(temporary_storage_bytes) FROM duckdb_memory()").fetchall()[0][0]
        assert spilled > 0 and any((tmp_path / "spill").rglob("*.tmp"))
        out = stored.aggregate(n=stored.count(), s=stored.i.sum(), t=stored.text.length().sum())
        out = out.to_pyarrow().to_pylist()
        expected_chars = sum(len(f"row {i}/{i * 7919 % 1000003}") for i in range(3_000_000))
        assert out == [{"n": 3_000_000, "s": sum(range(3_000_000)), "t": expected_chars}]
    finally:
        engine.close()


def test_an_empty_duckdb_section_means_defaults(tmp_path: Path) -> None:
    cfg = parse_config("duckdb:\n", tmp_path / "tieout.yaml")
    assert (cfg.duckdb.memory_limit, cfg.duckdb.threads, cfg.duckdb.temp_directory) == (None, None, None)
    engine = create_engine("duckdb", cfg)
    try:  # DuckDB's own default is 80% of RAM; tieout's is 2 GB (less only on a smaller machine)
        shown = _setting(engine, "memory_limit")
        assert shown in ("1.9 GiB", "2.0 GiB") or shown.endswith("MiB"), shown
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert default_memory_limit() == ("2048MB" if physical * 0.8 >= 2 * 1024**3 else
                                          f"{int(physical * 0.8) // 1024**2}MB")
    finally:
        engine.close()


@pytest.mark.parametrize(("text", "first_line"), [
    ("duckdb:\n  memory: 2GB\n", "tieout.yaml:2: duckdb.memory:"),
    ("duckdb:\n  threads: 0\n", "tieout.yaml:2: duckdb.threads:"),
])
def test_bad_duckdb_settings_name_the_line(tmp_path: Path, text: str, first_line: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "tieout.yaml")
    assert str(exc.value).splitlines()[0].startswith(first_line)


def test_a_ragged_row_past_the_sniffed_sample_names_file_and_line(tmp_path: Path) -> None:
    """The file is parsed by the query that normalizes it, not when it is opened: the error still says where."""
    rows = [f"P-{i},C-1,payment,card,1.00,USD,2026-07-01\n" for i in range(30_000)]
    rows.append("P-x,C-1,payment,card,1.00,USD,2026-07-01,extra,fields\n")
    (tmp_path / "p.csv").write_text(HEADER + "".join(rows))
    cfg = parse_config("store: sqlite:///t.db\nsources:\n  - {name: p, format: csv, path: p.csv, table: payments}\n",
                       tmp_path / "tieout.yaml")
    with pytest.raises(InputError) as exc:
        run(cfg)
    assert str(exc.value).splitlines()[0].startswith("p.csv:30002: cannot be read as CSV:")


def test_a_corrupt_parquet_page_past_the_footer_names_the_file(tmp_path: Path) -> None:
    """A Parquet view is read lazily too: a page that does not decompress fails in the query that
    normalizes it, as an input error naming the file (exit 2), not an internal error."""
    n = 200_000
    table = pa.table({"payment_id": [f"P-{i}" for i in range(n)], "customer_id": ["C-1"] * n,
                      "type": ["payment"] * n, "method": ["card"] * n, "amount": ["1.00"] * n,
                      "currency": ["USD"] * n, "received_at": ["2026-07-01"] * n})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=50_000, compression="snappy")
    data = bytearray((tmp_path / "p.parquet").read_bytes())
    middle = len(data) // 2  # inside a data page; the footer at the end stays readable
    data[middle:middle + 4000] = bytes((b * 7 + 13) % 256 for b in data[middle:middle + 4000])
    (tmp_path / "p.parquet").write_bytes(bytes(data))
    cfg = parse_config("store: sqlite:///t.db\nsources:\n  - {name: p, format: parquet, path: p.parquet, "
                       "table: payments}\n", tmp_path / "tieout.yaml")
    with pytest.raises(InputError) as exc:
        run(cfg)
    assert str(exc.value).splitlines()[0].startswith("p.parquet: cannot be read as Parquet:")
