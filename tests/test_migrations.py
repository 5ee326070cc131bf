"""Alembic owns the schema: it goes up from empty, matches the models, and comes down to base."""

import asyncio
import uuid

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrate
from app.models import Base
from tests.conftest import _admin


def tables_and_drift(url: str) -> tuple[set[str], list[object]]:
    async def read() -> tuple[set[str], list[object]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: (
                        set(inspect(sync).get_table_names()) - {"alembic_version"},
                        compare_metadata(MigrationContext.configure(sync), Base.metadata),
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def scratch_database(database_url: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.sqlite3'}"
    name = f"bankfeeds_migrations_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


def test_migrations_go_up_from_empty_match_the_models_and_go_down_to_base(database_url, tmp_path):
    url = scratch_database(database_url, tmp_path)
    try:
        migrate.upgrade(url)
        tables, drift = tables_and_drift(url)
        assert tables == set(Base.metadata.tables)
        assert drift == []

        migrate.downgrade(url, "base")
        assert tables_and_drift(url)[0] == set()

        command.upgrade(migrate.alembic_config(url), "head")  # and up again: downgrades leave nothing behind
        assert tables_and_drift(url)[0] == set(Base.metadata.tables)
    finally:
        if not url.startswith("sqlite"):
            asyncio.run(
                _admin(database_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            )
