"""`tieout links …`: the entity links of the last run (method and score) and the review queue of
uncertain ones, whose confirm/reject decisions the next runs follow."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from tieout.cli import CONFIG_OPT, _open_store, _out, add_row, app

links_app = typer.Typer(help="Entity links across systems and the review queue.", no_args_is_help=True)
app.add_typer(links_app, name="links")

BY_OPT = typer.Option(None, "--by", help="Who decides (default: the login name).")
NOTE_OPT = typer.Option("", "--note", help="Why, kept with the decision.")


@links_app.command("review")
def links_review(
    config: Path = CONFIG_OPT,
    status: str = typer.Option("pending", "--status", help="pending, confirmed, rejected or all."),
) -> None:
    """The review queue: account pairs that may be the same customer, with score and reason."""
    from tieout.links import candidates

    if status not in ("pending", "confirmed", "rejected", "all"):
        raise typer.BadParameter("one of pending, confirmed, rejected, all", param_hint="--status")
    with _open_store(config) as store:
        rows = candidates(store, None if status == "all" else status)
    t = Table(title=f"{len(rows)} {'' if status == 'all' else status + ' '}link candidates")
    for col in ("id", "system", "account", "name there", "billing customer", "billing name", "score", "reason",
                "status"):
        t.add_column(col, overflow="fold", justify="right" if col == "score" else "left")
    for r in rows:
        add_row(t, r.candidate_id, r.system, r.account_id, r.account_name, r.customer_id, r.customer_name,
                f"{r.score:.1f}", r.reason, r.status)
    out = _out()
    out.print(t)
    if rows and status == "pending":
        out.print(f"decide: tieout links confirm ID -c {config}  |  tieout links reject ID -c {config}")


def _decide(candidate: str, decision: str, config: Path, by: str | None, note: str) -> None:
    from tieout.links import decide

    with _open_store(config) as store:
        row = decide(store, candidate, decision, by or getpass.getuser(), note)
    _out().print(Text(f"{decision} {row.candidate_id}: {row.system} {row.account_id} ({row.account_name}) "
                      f"{'is' if decision == 'confirmed' else 'is not'} billing customer {row.customer_id} "
                      f"({row.customer_name}); the next run follows this"))


@links_app.command("confirm")
def links_confirm(candidate: str = typer.Argument(..., help="Candidate id (or a unique prefix)."),
                  config: Path = CONFIG_OPT, by: str | None = BY_OPT, note: str = NOTE_OPT) -> None:
    """Confirm a candidate: the two accounts are the same customer."""
    _decide(candidate, "confirmed", config, by, note)


@links_app.command("reject")
def links_reject(candidate: str = typer.Argument(..., help="Candidate id (or a unique prefix)."),
                 config: Path = CONFIG_OPT, by: str | None = BY_OPT, note: str = NOTE_OPT) -> None:
    """Reject a candidate: different customers; never linked or proposed again."""
    _decide(candidate, "rejected", config, by, note)


@links_app.command("list")
def links_list(
    config: Path = CONFIG_OPT,
    system: str | None = typer.Option(None, "--system", help="Only this system (crm, operations, ...)."),
    method: str | None = typer.Option(None, "--method", help="Only links made this way (mapped_id, "
                                      "exact_name, alias, fuzzy, confirmed)."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many links."),
) -> None:
    """The links of the last run: which account is which billing customer, how and how sure."""
    from tieout.links import run_links

    with _open_store(config) as store:
        rows = [r for r in run_links(store) if (system is None or r.system == system)
                and (method is None or r.method == method)]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.method] = counts.get(r.method, 0) + 1
    t = Table(title=f"{len(rows)} links" + (f" (first {limit})" if len(rows) > limit else "") + ": "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for col in ("system", "account", "billing customer", "method", "score"):
        t.add_column(col, overflow="fold")
    for r in rows[:limit]:
        add_row(t, r.system, r.account_id, r.customer_id, r.method, f"{r.score:.1f}")
    _out().print(t)
