"""How many pytest-xdist workers should the evaluation use on this machine?

Runs ``pytest --model all -p no:randomly -q --no-report -n N`` from the repository root (testpaths:
``cases/``) for each N and prints wall time, relative to ``-n 0``, and which was fastest.
Every worker loads its own base model (imports + load: seconds each) and gets
``cores // workers`` torch threads; the plugin sends each case file to one worker (loadfile), so
a worker generates a whole category per model in batches.

Run: ``python -m benchmarks.xdist_workers [--quick] [--workers 0,1,2] [-k EXPR] [--json out.json]``
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from benchmarks.common import (
    REPO,
    allowed_cases,
    available_adapters,
    describe_machine,
    machine,
    ratio,
    setup_env,
    table,
    warm_page_cache,
    write_json,
)

QUICK_CATEGORIES = ("normal", "long")  # two case files, so two workers each get one
QUICK_PER_CATEGORY = 3


@dataclass
class PytestRun:
    workers: int
    wall_s: float
    exit_code: int
    summary: str  # pytest's last line, e.g. "5 passed, 1 xfailed in 20.1s"


def quick_selection() -> str:
    """A ``-k`` expression picking a few allowed cases from each of two case files."""
    ids: list[str] = []
    for category in QUICK_CATEGORIES:
        ids += [c["id"] for c in allowed_cases() if c["category"] == category][:QUICK_PER_CATEGORY]
    return " or ".join(ids)


def run_pytest(workers: int, model: str, select: str | None) -> PytestRun:
    cmd = [sys.executable, "-m", "pytest", "--model", model, "-p", "no:randomly", "-q", "--no-report", "-n", str(workers)]
    if select:
        cmd += ["-k", select]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = next((line.strip("= ") for line in reversed(lines) if re.search(r"\bin [\d.]+s\b", line)), "")
    if proc.returncode not in (0, 1):  # 1 = some cases below threshold: still a complete run
        print(f"pytest -n {workers} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}", file=sys.stderr)
    print(f"  -n {workers}: {wall:.1f} s ({summary or 'no summary'})", flush=True)
    return PytestRun(workers, wall, proc.returncode, summary)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.xdist_workers", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_PER_CATEGORY} cases from each of {', '.join(QUICK_CATEGORIES)} (via -k)")
    parser.add_argument("--workers", default="0,1,2", help="comma list of -n values (default 0,1,2)")
    parser.add_argument("--model", default="all", help="pytest --model value (default all)")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression (overrides --quick's)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    setup_env()
    counts = [int(n) for n in args.workers.split(",")]
    select = args.select or (quick_selection() if args.quick else None)
    info = machine()
    scope = f"-k <{select.count(' or ') + 1} case ids>" if args.quick and not args.select else (f"-k {select!r}" if select else "(all cases)")
    print(f"xdist_workers: pytest --model {args.model} {scope}, -n {args.workers}")
    print(describe_machine(info), flush=True)
    warm_page_cache(available_adapters())
    runs = [run_pytest(n, args.model, select) for n in counts]
    ok = [r for r in runs if r.exit_code in (0, 1)]
    ref = next((r for r in runs if r.workers == 0), runs[0])
    rows = [[f"-n {r.workers}", r.wall_s, ratio(r.wall_s, ref.wall_s), r.exit_code, r.summary] for r in runs]
    print("\n" + table(["workers", "wall s", f"wall vs -n {ref.workers}", "exit", "pytest summary"], rows))
    if ok:
        best = min(ok, key=lambda r: r.wall_s)
        print(f"\nfastest: -n {best.workers} ({best.wall_s:.1f} s)")
    write_json(args.json, {"machine": info, "select": select, "model": args.model, "runs": [asdict(r) for r in runs]})


if __name__ == "__main__":
    main()
