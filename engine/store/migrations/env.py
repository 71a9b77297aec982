"""Alembic environment: run on the connection `Store.open` hands over.

`Store.open` builds the Alembic config in code and passes its open connection
in `config.attributes["connection"]`, so no alembic.ini is needed at runtime
and migrations run inside the store's own thread. For `alembic` on the command
line (writing a new revision), give the URL with `-x url=sqlite:///var/outdial.db`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from engine.store.schema import metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database URL: alembic -x url=sqlite:///var/outdial.db ...")
    engine = create_engine(url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


run()
