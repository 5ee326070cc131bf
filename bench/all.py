"""Run the benchmarks (all, or those named) and keep their latest output in bench/RESULTS.md.

Each script's output (its table, the machine, the date and the command) replaces that script's section.
"""

import argparse
import re
import subprocess
import sys

from bench import harness as h

SCRIPTS = [
    "read_view",
    "read_scale",
    "read_cpu",
    "link_refresh",
    "onboarding",
    "memory",
    "steps",
    "profile_view",
    "retention",
    "console",
    "transactions",
]
RESULTS = h.ROOT / "bench" / "RESULTS.md"
INTRO = """# Benchmark results

The latest output of each script in bench/, written by `python -m bench.all` (see bench/README.md for what
each measures and how to read it). Every server runs on 127.0.0.1 and shares the machine's 2 cores with
wrk, Postgres, the sandbox and whatever else runs there: the "machine busy" and "stolen by the host" columns
say how quiet it was.
"""


def section(script: str, output: str) -> str:
    return f"<!-- bench.{script} -->\n{output.strip()}\n<!-- /bench.{script} -->\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scripts", nargs="*", metavar="SCRIPT", help=f"any of {SCRIPTS} (default: all)")
    args = parser.parse_args()
    text = RESULTS.read_text() if RESULTS.exists() else INTRO
    for script in args.scripts or SCRIPTS:
        if script not in SCRIPTS:
            raise SystemExit(f"no bench.{script}: choose from {SCRIPTS}")
        done = subprocess.run([h.PYTHON, "-m", f"bench.{script}"], cwd=h.ROOT, capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr[-4000:] if done.returncode else "")
        if done.returncode:
            raise SystemExit(f"bench.{script} failed ({done.returncode})")
        new = section(script, done.stdout)
        marked = re.compile(rf"<!-- bench\.{script} -->.*?<!-- /bench\.{script} -->\n", re.S)
        text = marked.sub(lambda _, new=new: new, text) if marked.search(text) else f"{text}\n{new}"
        RESULTS.write_text(text)  # after each script, so that a failure later keeps what was done


if __name__ == "__main__":
    main()
