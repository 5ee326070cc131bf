"""`make dev` restarted after a connect: the embedded sandbox lost its memory, so dev starts afresh, says so,
and every link the demo hands out afterwards opens a working Link page (never "This link has expired")."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "bankfeeds-bff"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dev(folder: Path, port: int) -> Iterator[tuple[str, str]]:
    """`bankfeeds-bff dev` in `folder` (its SQLite file lives there); yields its banner and the user token."""
    process = subprocess.Popen(
        [str(BIN), "dev", "--port", str(port)],
        cwd=folder,
        env={"PATH": os.environ["PATH"], "HOME": str(folder)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while not (token := re.search(r"export USER_TOKEN=(\S+)", banner)):
            line = process.stdout.readline()
            assert line, f"dev stopped before printing its tokens:\n{banner}"
            banner += line
        _wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        yield banner, token.group(1)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops `make dev`
        process.wait(timeout=20)


def _wait_until_answering(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _connect(base: str, token: str) -> str:
    answer = httpx.post(
        f"{base}/v1/bank-feed/connect",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["linkUrl"])


def _assert_link_works(link_url: str) -> None:
    page = httpx.get(link_url, timeout=10)
    assert page.status_code == 200
    assert "expired-explanation" not in page.text, "the Link page says the link has expired"
    assert "Get credentials" in page.text


def test_after_a_restart_the_demo_still_hands_out_a_working_link(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with dev(tmp_path, port) as (_, token):
        _assert_link_works(_connect(base, token))

    with dev(tmp_path, port) as (banner, token):
        assert "Starting afresh" in banner
        headers = {"Authorization": f"Bearer {token}"}
        stored = httpx.get(f"{base}/v1/bank-feed/link", headers=headers, timeout=30)
        if stored.status_code == 200:
            _assert_link_works(stored.json()["linkUrl"])
        else:  # nothing stored survived: the demo offers to connect
            assert httpx.get(f"{base}/v1/bank-feed", headers=headers).json()["action"] == "connect"
        _assert_link_works(_connect(base, token))
