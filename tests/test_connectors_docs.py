"""docs/connectors.md carries the connector registry's reference, and every stream is a source format."""

from __future__ import annotations

from pathlib import Path

from tieout.sources import FORMATS
from tieout.sources.connectors import CONNECTOR_FORMATS, CONNECTORS, reference_markdown

DOC = Path(__file__).parent.parent / "docs" / "connectors.md"


def test_reference_is_generated_from_the_registry() -> None:
    doc = DOC.read_text(encoding="utf-8")
    marker = "## Reference (generated from the connector registry)"
    generated = doc.split(marker, 1)[1].split("\n\n", 2)[2]
    assert generated == reference_markdown(), "docs/connectors.md is stale: regenerate its Reference section"


def test_every_connector_stream_is_a_registered_format_with_a_table_or_none() -> None:
    assert {"stripe_api", "sql"} <= set(CONNECTORS)
    for name, (_connector, stream) in CONNECTOR_FORMATS.items():
        assert FORMATS[name].reader.__name__ == "read_parquet"
        assert FORMATS[name].table == stream.table
