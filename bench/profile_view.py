"""Profile `GET /v1/bank-feed` under load: py-spy samples the one uvicorn worker while wrk drives it.

Prints where the worker's time goes, by package and by function (self time and inclusive time), and leaves
the raw collapsed stacks in bench/out/ (load them in speedscope.app, or flamegraph.pl, to look closer).
"""

import argparse
import asyncio
import collections
import re
import subprocess
import threading

from bench import harness as h
from bench.read_view import BUSINESS, store_state

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
PACKAGES = [
    "app",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "asyncpg",
    "jwt",
    "pydantic",
    "prometheus_client",
    "httptools",
    "uvloop",
    "asyncio",
    "anyio",
    "json",
    "hashlib",
    "logging",
    "contextvars",
]


def package(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    for name in PACKAGES:
        if name in parts or parts[0] == name or file.startswith(name):
            return name
    return parts[0] if parts else file


def summarise(raw: str, top: int) -> None:
    samples = 0
    self_by_func: collections.Counter[str] = collections.Counter()
    total_by_func: collections.Counter[str] = collections.Counter()
    self_by_package: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        leaf = FRAME.match(frames[-1])
        self_by_func[frames[-1]] += count
        self_by_package[package(leaf["file"]) if leaf else frames[-1]] += count
        for frame in set(frames):
            total_by_func[frame] += count
    print(f"{samples} samples holding the GIL in the worker (its busy time)\n")
    print(
        h.table(
            ["package (self time)", "share"],
            [[p, f"{c / samples:.1%}"] for p, c in self_by_package.most_common(top)],
        )
    )
    print()
    print(
        h.table(
            ["function (self time)", "share"],
            [[f"`{f}`", f"{c / samples:.1%}"] for f, c in self_by_func.most_common(top)],
        )
    )
    print()
    app_frames = [(f, c) for f, c in total_by_func.most_common() if "app/" in f or "(app" in f][:top]
    print(
        h.table(
            ["app function (inclusive)", "share"], [[f"`{f}`", f"{c / samples:.1%}"] for f, c in app_frames]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    h.header("Profile of GET /v1/bank-feed under wrk (64 connections, one worker)")
    database = h.fresh_database("bench_profile")
    out = h.ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    raw_file = out / "profile_view.txt"
    with h.sandbox() as codat, h.bff(database, codat) as (url, proc):
        asyncio.run(store_state(url))
        headers = h.user_headers(BUSINESS)
        h.wrk(f"{url}/v1/bank-feed", headers, seconds=3)  # warm-up
        load = threading.Thread(target=h.wrk, args=(f"{url}/v1/bank-feed", headers, args.seconds + 2))
        load.start()
        subprocess.run(
            [
                str(h.PY_SPY),
                "record",
                "--pid",
                str(proc.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nolineno",
                "--gil",
                "--output",
                str(raw_file),
            ],
            check=True,
            capture_output=True,
            timeout=args.seconds + 30,
        )
        load.join()
    summarise(raw_file.read_text(), args.top)


if __name__ == "__main__":
    main()
