"""Alembic environment: runs on the connection Sing hands over, or on `-x url=…` from the alembic CLI."""

from __future__ import annotations

from typing import Any

from alembic import context

from sing_backend.history.db import VERSION_TABLE, make_sync_engine
from sing_backend.history.models import Base

config = context.config


def run(**options: Any) -> None:
    context.configure(target_metadata=Base.metadata, version_table=VERSION_TABLE, **options)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection=connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database as: alembic -c …/alembic.ini -x url=DATABASE_URL …")
    if context.is_offline_mode():
        run(url=url, literal_binds=True)
    else:
        engine = make_sync_engine(url)
        try:
            with engine.connect() as cli_connection:
                run(connection=cli_connection)
        finally:
            engine.dispose()
