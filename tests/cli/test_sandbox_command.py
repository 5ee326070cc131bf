"""`bankfeeds-bff sandbox` as another team would use it in its own tests: start it, read what it printed,
and point Codat's official SDK at it with nothing else."""

import base64
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from codat_bankfeeds import CodatBankFeeds
from codat_bankfeeds.models import shared
from codat_bankfeeds.utils import RetryConfig

BIN = Path(sys.executable).parent / "bankfeeds-bff"
PRINTED = re.compile(r"^\s*(URL|API key|Admin|Webhook secret)\s+(\S+)", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What `bankfeeds-bff sandbox --port P` printed, by label, once it answers."""
    process = subprocess.Popen(
        [str(BIN), "sandbox", "--port", str(_free_port())],
        cwd=tmp_path_factory.mktemp("sandbox"),
        env={"PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while len(found := dict(PRINTED.findall(banner))) < 4:
            line = process.stdout.readline()
            assert line, f"the sandbox stopped before printing its URL and key:\n{banner}"
            banner += line
        _wait_until_answering(found["URL"])
        yield found
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_answering(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_codats_sdk_given_only_what_the_command_printed_runs_the_seed_flow(printed: dict[str, str]) -> None:
    auth = "Basic " + base64.b64encode(printed["API key"].encode()).decode()
    with CodatBankFeeds(
        security=shared.Security(auth_header=auth),
        server_url=printed["URL"],
        retry_config=RetryConfig("none", None, False),
    ) as codat:
        company = codat.companies.create(request={"name": "Bank of Dave"})
        connection = codat.connections.create(
            request={"company_id": company.id, "request_body": {"platform_key": "hcws"}}
        )
        ids = {"company_id": company.id, "connection_id": connection.id}
        account = {
            "id": "ac-001",
            "account_name": "Checking",
            "account_type": "checking",
            "account_number": "12345670",
            "currency": "USD",
            "balance": 4002,
        }
        created = codat.source_accounts.create(request={**ids, "request_body": account})
        listed = codat.source_accounts.list(request=ids)
        credentials = codat.source_accounts.generate_credentials(request={**ids, "request_body": b"{}"})

    assert (created.id, created.status.value) == ("ac-001", "pending")
    assert [a.id for a in listed] == ["ac-001"]
    assert credentials.username
    link_page = httpx.get(connection.link_url)
    assert link_page.status_code == 200
    assert connection.link_url.startswith(printed["URL"])


def test_the_index_page_says_what_it_is_with_the_key_and_links(printed: dict[str, str]) -> None:
    page = httpx.get(printed["URL"] + "/")

    assert page.status_code == 200
    assert "Codat sandbox" in page.text
    assert printed["API key"] in page.text
    assert f'href="{printed["Admin"].rstrip("/")}/"' in page.text
    assert "/_sandbox/portal" in page.text
    assert "https://docs.codat.io/" in page.text
    assert httpx.get(printed["Admin"]).status_code == 200


def test_the_printed_webhook_secret_is_a_standard_webhooks_secret(printed: dict[str, str]) -> None:
    assert printed["Webhook secret"].startswith("whsec_")
    base64.b64decode(printed["Webhook secret"].removeprefix("whsec_"), validate=True)
