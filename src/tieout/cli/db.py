"""`tieout db ...`: the store's schema, managed by the Alembic migrations shipped in the package."""

from __future__ import annotations

from pathlib import Path

import typer

from tieout.cli import CONFIG_OPT, _out, app

db_app = typer.Typer(help="The findings store's schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    config: Path = CONFIG_OPT,
    revision: str = typer.Option("head", "--revision", help="Target revision (default: the newest)."),
) -> None:
    """Create the store or upgrade its schema to the newest (or a given) revision."""
    from tieout.config import load_config
    from tieout.store import Store, upgrade

    store = Store(load_config(config).store_url(), migrate=False)
    try:
        before, after = upgrade(store.engine, revision)
    finally:
        store.close()
    _out().print(f"store schema: {before or '(empty)'} -> {after}" if before != after else
                 f"store schema already at {after}")


@db_app.command("current")
def db_current(config: Path = CONFIG_OPT) -> None:
    """The store's schema revision and the newest one this tieout ships."""
    from tieout.config import load_config
    from tieout.store import Store, current_revision, head_revision

    store = Store(load_config(config).store_url(), migrate=False)
    try:
        with store.engine.connect() as conn:
            at = current_revision(conn)
    finally:
        store.close()
    head = head_revision()
    _out().print(f"store schema: {at or '(empty)'}; newest: {head}" +
                 ("" if at == head else " (run `tieout db upgrade`)"))
