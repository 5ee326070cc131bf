"""The repository is all the suite needs: Codat's OpenAPI files are committed, unmodified, and nothing reads
a path outside the repository
(``.ci/run`` runs the suite in a fresh clone with nothing beside it)."""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.contract import SPEC_DIR, SPEC_FILES, ContractViolation, validate_response

REPO = Path(__file__).resolve().parent.parent
# A path out of the repository as code would spell it: a parent-relative literal to the steering repository's
# "shared" folder, a "shared" path segment found by walking up the parents, or its upstream/ folder anywhere.
OUTSIDE_PATH = re.compile(r"[\"']\.\./shared|/ [\"']shared[\"']|shared[/\\]upstream")


def _checksums_in_source_note() -> dict[str, str]:
    note = (SPEC_DIR / "SOURCE.txt").read_text(encoding="utf-8")
    return dict(re.findall(r"^(\S+\.json) .* ([0-9a-f]{64})$", note, flags=re.MULTILINE))


def test_contract_files_are_read_from_the_repository() -> None:
    assert SPEC_DIR.is_relative_to(REPO)
    for name in SPEC_FILES:
        assert (SPEC_DIR / name).is_file()


def test_committed_spec_files_match_the_checksums_of_their_source() -> None:
    expected = _checksums_in_source_note()
    assert set(expected) == {"Codat-Bank-Feeds.json", "Codat-Platform.json", "Webhooks.json"}
    for name, sha256 in expected.items():
        assert hashlib.sha256((SPEC_DIR / name).read_bytes()).hexdigest() == sha256, name


def test_the_contract_checks_load_and_refuse_a_wrong_body() -> None:
    path = "/companies/c1/connections/d1"
    validate_response("GET", path, 200, json.dumps(_CONNECTION).encode())
    with pytest.raises(ContractViolation):
        validate_response("GET", path, 200, json.dumps({**_CONNECTION, "status": 7}).encode())


def test_no_tracked_code_reads_a_path_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.toml", "*.ini", "*.cfg", "Makefile", ".ci/*", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    this_file = Path(__file__).relative_to(REPO).as_posix()
    offenders = [
        f"{name}:{number}"
        for name in tracked
        if name != this_file
        for number, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_PATH.search(line)
    ]
    assert offenders == []


_CONNECTION = {
    "id": "d1",
    "integrationId": "i1",
    "integrationKey": "hcws",
    "sourceId": "s1",
    "platformName": "QuickBooks Online Bank Feeds",
    "linkUrl": "https://link-api.codat.io/companies/c1/connections/d1/start",
    "status": "PendingAuth",
    "created": "2026-11-23T10:00:00Z",
    "sourceType": "BankFeed",
}
