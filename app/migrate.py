"""Run the Alembic migrations from code (the CLI and the tests), with an explicit database URL."""

from pathlib import Path

from alembic import command
from alembic.config import Config

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _project_root() -> Path:
    # A checkout has alembic.ini beside app/; an installed image has it in the working directory.
    return SOURCE_ROOT if (SOURCE_ROOT / "alembic.ini").exists() else Path.cwd()


def alembic_config(database_url: str) -> Config:
    root = _project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revisions() -> set[str]:
    """The revisions `upgrade head` ends at, from the migration scripts this code ships with."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("")).get_heads())
