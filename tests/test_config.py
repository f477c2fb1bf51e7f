"""`tieout.yaml` validation: every error's first line is `tieout.yaml:LINE: key.path: problem`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tieout.config import Config, load_config, parse_config
from tieout.errors import ConfigError, ExitCode
from tieout.sources import FORMATS, source_format

YAML = Path("/work/ws/tieout.yaml")


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, YAML)
    assert exc.value.exit_code is ExitCode.BAD_INPUT
    return str(exc.value).splitlines()[0]


def test_empty_file_is_a_valid_config_with_defaults() -> None:
    for text in ("", "\n", "# nothing configured yet\n"):
        cfg = parse_config(text, YAML)
        assert isinstance(cfg, Config)
        assert (cfg.engine, cfg.home_currency, cfg.sources, cfg.fail_on) == ("duckdb", "USD", [], "high")
        assert cfg.root == YAML.parent


def test_a_full_source_section_is_read() -> None:
    cfg = parse_config(
        "home_currency: eur\n"
        "sources:\n"
        "  - name: stripe\n"
        "    format: stripe_balance\n"
        "    path: exports/*.csv\n"
        "    columns: {invoice_ref: 'payment_metadata[invoice_number]', customer_id: [a, b]}\n"
        "    timezone: America/New_York\n"
        "    encoding: latin-1\n",
        YAML,
    )
    src = cfg.sources[0]
    assert cfg.home_currency == "EUR"
    assert src.columns == {"invoice_ref": "payment_metadata[invoice_number]", "customer_id": ["a", "b"]}
    assert (src.timezone, src.encoding) == ("America/New_York", "latin-1")
    assert cfg.resolve(src.path) == YAML.parent / "exports/*.csv"
    assert cfg.where(("sources", 0, "timezone")) == "tieout.yaml:7"


@pytest.mark.parametrize(("text", "first_line"), [
    ("engine: duckdb\nbogus: 1\n", "tieout.yaml:2: bogus: unknown key (not allowed here)"),
    ("sources:\n  - name: a\n    format: csv\n    path: x.csv\n    colums: {}\n",
     "tieout.yaml:5: sources.0.colums: unknown key (not allowed here)"),
    ("severity:\n  high: 10\n  critical: 5\n", "tieout.yaml:3: severity.critical: unknown key (not allowed here)"),
])
def test_unknown_key_names_line_and_path(text: str, first_line: str) -> None:
    assert config_error(text) == first_line


@pytest.mark.parametrize(("text", "first_line"), [
    ("sources: 5\n", "tieout.yaml:1: sources: Input should be a valid list"),
    ("engine: duckdb\nseverity: {high: lots}\n", "tieout.yaml:2: severity.high: Input should be a valid decimal"),
    ("engine: duckdb\nas_of: 2026-13-40\n", "tieout.yaml:2: as_of: Input should be a valid date"),
    ("fail_on: sometimes\n", "tieout.yaml:1: fail_on: Input should be 'high', 'medium', 'low' or 'never'"),
    # a union (text or list of texts): no pydantic type tag in the path, both alternatives named
    ("sources:\n  - name: a\n    format: csv\n    path: x\n    columns:\n      amount: 5\n",
     "tieout.yaml:6: sources.0.columns.amount: Input should be a valid string; or Input should be a valid list"),
    ("sources:\n  - name: a\n    format: csv\n", "tieout.yaml:2: sources.0.path: Field required"),
    ("home_currency: XYZ\n", "tieout.yaml:1: home_currency: 'XYZ' is not an ISO-4217 currency code"),
    ("sources:\n  - {name: a, format: csv, path: x, timezone: Mars/Olympus}\n",
     "tieout.yaml:2: sources.0.timezone: unknown time zone 'Mars/Olympus' (an IANA name such as America/New_York)"),
    ("sources:\n  - {name: a, format: csv, path: x, encoding: klingon}\n",
     "tieout.yaml:2: sources.0.encoding: unknown text encoding 'klingon' (e.g. utf-8, latin-1, cp1252, utf-16)"),
])
def test_wrong_type_or_value_names_line_and_path(text: str, first_line: str) -> None:
    assert config_error(text).startswith(first_line)


def test_more_problems_are_counted() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("a: 1\nb: 2\nc: 3\n", YAML)
    assert str(exc.value).splitlines()[1] == "(2 more problems after fixing this one)"


def test_unknown_engine_is_reported_with_the_known_ones() -> None:
    assert config_error("store: x\nengine: sparkle\n") == \
        "tieout.yaml:2: engine: unknown engine 'sparkle' (known: duckdb, spark)"


def test_unknown_format_is_reported_by_source_format() -> None:
    cfg = parse_config("sources:\n  - name: a\n    path: x.csv\n    format: excel97\n", YAML)
    with pytest.raises(ConfigError) as exc:
        source_format(cfg, 0)
    first = str(exc.value).splitlines()[0]
    assert first.startswith("tieout.yaml:4: sources.0.format: unknown format 'excel97' (known: ")
    for name in ("csv", "parquet", "jsonl", "xlsx", "stripe_balance", "stripe_payments", "quickbooks_gl"):
        assert name in first and name in FORMATS


def test_duplicate_source_names() -> None:
    text = "sources:\n  - {name: a, format: csv, path: x}\n  - {name: b, format: csv, path: y}\n" \
           "  - {name: a, format: csv, path: z}\n"
    assert config_error(text) == "tieout.yaml:4: sources.2.name: duplicate source name 'a' (first is sources.0)"


def test_duplicate_yaml_key_is_an_error_not_a_silent_override() -> None:
    assert config_error("engine: duckdb\nhome_currency: USD\nengine: duckdb\n") == \
        "tieout.yaml:3: engine: duplicate key (first at line 1)"


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIEOUT_TEST_DATA", "/data/exports")
    monkeypatch.setenv("TIEOUT_TEST_STORE", "postgresql://localhost/tieout")
    cfg = parse_config(
        "store: ${TIEOUT_TEST_STORE}\nsources:\n  - {name: a, format: csv, path: '${TIEOUT_TEST_DATA}/a.csv'}\n", YAML
    )
    assert cfg.store == "postgresql://localhost/tieout"
    assert cfg.sources[0].path == "/data/exports/a.csv"


def test_missing_env_variable_names_line_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIEOUT_TEST_MISSING", raising=False)
    text = "engine: duckdb\nsources:\n  - name: a\n    format: csv\n    path: ${TIEOUT_TEST_MISSING}/a.csv\n"
    assert config_error(text) == \
        "tieout.yaml:5: sources.0.path: environment variable ${TIEOUT_TEST_MISSING} is not set"


@pytest.mark.parametrize(("text", "prefix"), [
    ("engine: duckdb\nsources: [\n  - a\n", "tieout.yaml:3: not valid YAML: "),
    ("engine: duckdb\n  bad: indent\n", "tieout.yaml:2: not valid YAML: "),
    ("engine: 'unclosed\n", "tieout.yaml:2: not valid YAML: "),
])
def test_invalid_yaml_names_the_line(text: str, prefix: str) -> None:
    assert config_error(text).startswith(prefix)


def test_as_of_is_a_date() -> None:
    assert parse_config("as_of: 2026-07-31\n", YAML).as_of == date(2026, 7, 31)


def test_top_level_must_be_a_mapping() -> None:
    assert config_error("- a\n- b\n") == "tieout.yaml:1: the top level must be a mapping of sections"


def test_yaml_tags_are_not_executed() -> None:
    first = config_error("engine: !!python/object/apply:os.system ['true']\n")
    assert first.startswith("tieout.yaml:1: not valid YAML")


def test_load_config_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "tieout.yaml")
    (tmp_path / "tieout.yaml").write_bytes(b"home_currency: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "tieout.yaml")


def test_store_url_is_relative_to_the_config() -> None:
    assert parse_config("store: sqlite:///findings.db\n", YAML).store_url() == "sqlite:////work/ws/findings.db"
    assert parse_config("store: 'sqlite:///:memory:'\n", YAML).store_url() == "sqlite:///:memory:"
