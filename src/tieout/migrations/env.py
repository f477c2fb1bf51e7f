"""Alembic environment of the findings store. `tieout.store.upgrade` passes an open connection in
`config.attributes["connection"]`; the `alembic` command line (for writing a new revision, see
docs/workflow.md) passes `-x url=sqlite:///path.db` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from tieout.store import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///tieout.db")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
