"""`tieout audit ...`: prove the hash chain of the audit log and export it for an auditor."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.text import Text

from tieout.cli import CONFIG_OPT, _err, _open_store, _out, app
from tieout.errors import ExitCode

audit_app = typer.Typer(help="The tamper-evident audit log of runs, changes and notifications.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")


class AuditFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _anchor(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter("expected SEQ:HASH as printed by an earlier `tieout audit verify`",
                                 param_hint="--anchor")
    return int(seq), digest


@audit_app.command("verify")
def audit_verify(
    config: Path = CONFIG_OPT,
    anchor: str | None = typer.Option(None, "--anchor", help="SEQ:HASH printed by an earlier verify: also "
                                      "proves nothing up to that entry was cut off."),
) -> None:
    """Recompute the chain: exit 0 when every entry is intact, 1 naming the first bad entry."""
    wanted = _anchor(anchor)
    with _open_store(config) as store:
        result = store.verify_audit(wanted)
    if result.ok:
        _out().print(Text(result.message()))
        _out().print(Text(f"anchor: {result.entries}:{result.head}"))
        return
    _err().print(Text(result.message(), style="bold red"))
    raise typer.Exit(ExitCode.FINDINGS)


@audit_app.command("export")
def audit_export(
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    fmt: AuditFormat = typer.Option(AuditFormat.JSON, "--format", case_sensitive=False, help="csv or json."),
    config: Path = CONFIG_OPT,
) -> None:
    """Write the whole audit log (every field and hash, so it can be re-verified) to CSV or JSON."""
    from tieout.audit import export_entries

    with _open_store(config) as store:
        entries = store.audit_entries()
    n = export_entries(entries, output, fmt.value)
    _out().print(f"wrote {n} audit entries to {output}")
