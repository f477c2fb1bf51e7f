"""The commented example `tieout.yaml` that `tieout init` writes, generated from the config models,
the check registry, the source formats and the canonical model, so it cannot drift from them.

This room renders text only; it neither reads nor validates a config (see `config`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, get_origin

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tieout.checks import CHECKS
from tieout.config import Config, SourceConfig
from tieout.model import TABLES
from tieout.sources import FORMATS

_WIDTH = 100


@dataclass(frozen=True)
class FieldDoc:
    """One field of a pydantic model as users read it (in `tieout checks` and `tieout init`)."""

    name: str
    type_text: str
    required: bool
    default: Any
    description: str
    model: type[BaseModel] | None  # a nested section, rendered as its own block


def type_name(annotation: Any) -> str:
    """'int', 'list[str]', 'date | None': how a field's type reads in help and comments."""
    if annotation is None or annotation is type(None):
        return "None"
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    for noise in ("typing.", "datetime.", "decimal."):
        text = text.replace(noise, "")
    return text


def summary(doc: str) -> str:
    """The first paragraph of a docstring on one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def field_docs(model: type[BaseModel]) -> list[FieldDoc]:
    """The fields of `model` in declaration order, defaults evaluated."""
    docs = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        if required:
            default: Any = None
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = info.default
        if default is PydanticUndefined:
            default = None
        nested = _nested_model(info.annotation)
        description = info.description or (textwrap.dedent(nested.__doc__ or "").strip() if nested else "")
        docs.append(FieldDoc(name, type_name(info.annotation), required, default, description, nested))
    return docs


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value.model_dump().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def yaml_value(value: Any) -> str:
    """A value in YAML flow style, on one line: `duckdb`, `[Checking]`, `{}`, `1000`."""
    plain = _plain(value)
    if isinstance(plain, date):
        return plain.isoformat()
    text: str = yaml.safe_dump(plain, default_flow_style=True, width=10_000, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    return text


def _comment(text: str, indent: str, width: int = _WIDTH) -> list[str]:
    if not text:
        return []
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width - len(indent) - 2)]


def _field_block(f: FieldDoc, indent: str) -> list[str]:
    lines = _comment(f.description, indent)
    if f.model is not None:
        lines.append(f"{indent}{f.name}:")
        for sub in field_docs(f.model):
            lines.extend(_field_block(sub, indent + "  "))
    elif f.required:
        lines.append(f"{indent}# {f.name}: <{f.type_text}>   (required)")
    elif f.default is None:
        lines.append(f"{indent}# {f.name}: <{f.type_text}>   (default: none)")
    else:
        lines.append(f"{indent}{f.name}: {yaml_value(f.default)}")
    return lines


def _sources_block() -> list[str]:
    lines = ["# sources: the inputs, one entry per file or glob. Keys of an entry:"]
    docs = field_docs(SourceConfig)
    pad = max(len(d.name) for d in docs)
    for d in docs:
        if d.required:
            default = "required"
        elif d.default is None:
            default = "default: none"
        else:
            default = f"default: {yaml_value(d.default)}"
        wrapped = textwrap.wrap(f"({default}) {d.description}", _WIDTH - pad - 6)
        lines.append(f"#   {d.name.ljust(pad)} {wrapped[0]}")
        lines.extend(f"#   {' ' * pad} {more}" for more in wrapped[1:])
    lines.append("# Formats (`tieout sources formats`):")
    for fmt in FORMATS.values():
        fills = f" (fills {fmt.table})" if fmt.table else ""
        wrapped = textwrap.wrap(f"{fmt.name}{fills}: {summary(fmt.doc)}", _WIDTH - 6)
        lines.append(f"#   {wrapped[0]}")
        lines.extend(f"#     {more}" for more in wrapped[1:])
    lines.append("# Generic formats (csv, parquet, jsonl, xlsx) read columns named as the canonical ones")
    lines.append("# (* = required); map others under `columns:`.")
    for t in TABLES.values():
        cols = ", ".join(c.name + ("*" if c.required else "") for c in t.columns)
        wrapped = textwrap.wrap(f"{t.name}: {cols}", _WIDTH - 6)
        lines.append(f"#   {wrapped[0]}")
        lines.extend(f"#     {more}" for more in wrapped[1:])
    lines.append("# Example (uncomment, point `path` at your exports and remove the `[]`):")
    for t in TABLES.values():
        lines.append(f"#   - {{name: {t.name}, format: csv, path: data/{t.name}.csv, table: {t.name}}}")
    lines.append("sources: []")
    return lines


def _checks_block() -> list[str]:
    lines = ["# checks: parameters per check (`tieout checks`); every check runs when its tables have a source.",
             "checks:"]
    for check in CHECKS.values():
        lines.extend(_comment(summary(check.doc), "  "))
        lines.extend(_comment(f"Raises: {', '.join(check.categories)}.", "  "))
        lines.append(f"  {check.name}:")
        for f in field_docs(check.params):
            lines.extend(_field_block(f, "    "))
    return lines


def example_config() -> str:
    """The text of a commented `tieout.yaml` that `load_config` accepts as written."""
    lines = [
        "# tieout.yaml, written by `tieout init` from tieout's configuration models and check registry.",
        "# Every key is shown with its default. Unknown keys are errors (reported with their line);",
        "# relative paths are relative to this file; ${ENV_VAR} is replaced by the variable's value.",
        "",
    ]
    for f in field_docs(Config):
        if f.name == "sources":
            lines.extend(_sources_block())
        elif f.name == "checks":
            lines.extend(_checks_block())
        else:
            lines.extend(_field_block(f, ""))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
