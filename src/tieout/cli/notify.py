"""`tieout notify ...`: the notifier registry and sending the queued notices (the outbox)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from tieout.cli import CONFIG_OPT, _open_store, _out, add_row, app
from tieout.errors import ExitCode

notify_app = typer.Typer(help="Notification channels and the outbox.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("channels")
def notify_channels() -> None:
    """The notifier types a channel can use, and their settings."""
    from tieout.init_config import field_docs, yaml_value
    from tieout.notify import NOTIFIERS

    out = _out()
    for n in NOTIFIERS.values():
        out.print(Text(n.name, style="bold"))
        out.print(Text(n.doc))
        t = Table()
        for col in ("setting", "type", "default", "description"):
            t.add_column(col, overflow="fold")
        for p in field_docs(n.settings):
            add_row(t, p.name, p.type_text, "required" if p.required else yaml_value(p.default), Text(p.description))
        out.print(t)


@notify_app.command("send")
def notify_send(config: Path = CONFIG_OPT) -> None:
    """Send the queued notices that are pending or failed before; exit 2 when one still fails."""
    from tieout.config import load_config
    from tieout.notify.outbox import dispatch

    cfg = load_config(config)
    with _open_store(config) as store:
        report = dispatch(cfg, store)
    out = _out()
    out.print(f"sent {report.messages_sent} messages ({report.notices_sent} notices); "
              f"{report.notices_failed} notices failed")
    if report.errors:
        from tieout.cli import _err

        for e in report.errors:
            _err().print(Text(e, style="bold red"))
        raise typer.Exit(ExitCode.BAD_INPUT)
