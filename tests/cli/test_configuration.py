"""`bankfeeds-bff` as an operator meets it: help on every option, one clear message for a bad configuration
(every variable named, no value, no traceback, exit 2), and `migrate` needing only the database."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from app import migrate
from app.cli import parser

BIN = Path(sys.executable).parent / "bankfeeds-bff"
SECRETS = {
    "BANKFEEDS_CODAT__API_KEY": "recognisable-codat-key-4b1d",
    "BANKFEEDS_AUTH__JWT_SECRET": "recognisable-jwt-secret-7c2e-0123456789abcdef0123",
    "BANKFEEDS_WEBHOOKS__SIGNING_SECRET": "whsec_cmVjb2duaXNhYmxlLXdlYmhvb2stc2VjcmV0",
    "BANKFEEDS_DATABASE__URL": "postgresql+asyncpg://bff:recognisable-db-password-9e8f@127.0.0.1:1/bff",
    "BANKFEEDS_DATABASE__ENCRYPTION_KEY": "cmVjb2duaXNhYmxlLWVuY3J5cHRpb24ta2V5LTAwMDE=",
}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a clean environment, in an empty folder (so no .env and no dev SQLite file beside it)."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    return subprocess.run(
        [str(BIN), *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60
    )


def test_prod_with_nothing_set_names_every_missing_variable_and_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", BANKFEEDS_ENVIRONMENT="prod")

    assert result.returncode == 2
    for variable in (
        "BANKFEEDS_DATABASE__URL",
        "BANKFEEDS_CODAT__API_KEY",
        "BANKFEEDS_AUTH__JWT_SECRET",
        "BANKFEEDS_WEBHOOKS__SIGNING_SECRET",
        "BANKFEEDS_AUTH__ISSUER",
        "BANKFEEDS_DATABASE__ENCRYPTION_KEY",
    ):
        assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 7  # a heading and one line per problem


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_refused_configuration_never_prints_a_secret(tmp_path: Path, command: str) -> None:
    refused = run(
        tmp_path, command, BANKFEEDS_ENVIRONMENT="prod", BANKFEEDS_SANDBOX__ENABLED="true", **SECRETS
    )
    invalid = run(
        tmp_path, command, BANKFEEDS_ENVIRONMENT="prod", BANKFEEDS_DATABASE__POOL_SIZE="x", **SECRETS
    )

    assert (refused.returncode, invalid.returncode) == (2, 2)
    assert "BANKFEEDS_SANDBOX__ENABLED" in refused.stderr
    assert "BANKFEEDS_DATABASE__POOL_SIZE" in invalid.stderr
    output = refused.stdout + refused.stderr + invalid.stdout + invalid.stderr
    for secret in SECRETS.values():
        assert secret not in output
    assert "recognisable" not in output
    assert "Traceback" not in output


def test_migrate_needs_only_the_database_url_and_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bff.sqlite3'}"
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()

    first = run(tmp_path, "migrate", BANKFEEDS_ENVIRONMENT="prod", BANKFEEDS_DATABASE__URL=url)
    again = run(tmp_path, "migrate", BANKFEEDS_ENVIRONMENT="prod", BANKFEEDS_DATABASE__URL=url)

    assert first.returncode == 0, first.stderr
    assert f"from revision (empty database) to {head}" in first.stdout
    assert f"already at revision {head}" in again.stdout
    assert migrate.current_revision(url) == head


def test_migrate_in_prod_without_a_database_url_is_refused(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", BANKFEEDS_ENVIRONMENT="prod")

    assert result.returncode == 2
    assert "BANKFEEDS_DATABASE__URL" in result.stderr
    assert not list(tmp_path.glob("*.sqlite3"))  # no SQLite file made in its place


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_has_help_and_shows_its_default() -> None:
    top = parser().format_help()
    for name, command in _subcommands().items():
        assert name in top
        assert command.description, name
        for option in command._actions:
            assert option.help, f"{name} {option.option_strings}"
        help_text = "".join(command.format_help().split())  # whatever the terminal width and wrapping
        for option in command._actions:
            if option.default not in (None, argparse.SUPPRESS, False):
                assert f"(default:{option.default})".replace(" ", "") in help_text, f"{name} {option.dest}"
