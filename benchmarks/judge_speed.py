"""Judge time over a whole evaluation, each offline judge side by side in one run.

    python -m benchmarks.judge_speed [--run results/reference] [--repeat 2] [--json out.json]

Work: every (description, valid names) request of a saved run (``cases.jsonl``; the reference
run is 4 models x 136 allowed cases: 407 requests that hold names, 900 names), judged the way the plugin
judges it: one ``score`` call per generated sample, in order. Each pass runs in a fresh
process, as an evaluation does: building the judge (imports, loading its encoder) is timed
apart from judging, and caches start empty (the learned judge's embedding cache fills as it
goes, the way it does over a real run). The best of ``--repeat`` passes is reported per judge
(the least disturbed by other work on a noisy machine).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO


def requests_of(run_dir: Path) -> list[tuple[str, list[str]]]:
    """(description, names the judge saw) per generated sample of a saved run."""
    out = []
    for line in (run_dir / "cases.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for sample in row.get("samples") or []:
            names = [d["domain"] for d in sample.get("domains", []) if d.get("overall") is not None or d.get("error")]
            if names:
                out.append((row["description"], names))
    return out


def one_pass(judge_name: str, run_dir: Path) -> dict[str, float | str]:
    """Build ``judge_name`` and judge every request of ``run_dir`` once (in this process)."""
    t0 = time.perf_counter()
    from domain_eval.judges import make_judge

    judge = make_judge(judge_name)
    build = time.perf_counter() - t0
    work = requests_of(run_dir)
    t0 = time.perf_counter()
    for desc, doms in work:
        judge.score(desc, doms)
    return {"version": judge.version, "build_s": build, "judge_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judge_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "results" / "reference", help="a saved run folder")
    parser.add_argument("--judges", default="learned,heuristic", help="comma-separated judge names")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one pass of one judge, JSON out
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print(json.dumps(one_pass(args.one, args.run)))
        return 0

    work = requests_of(args.run)
    names = sum(len(n) for _, n in work)
    print(f"{len(work)} requests, {names} names from {args.run}; load average {os.getloadavg()[0]:.2f}")
    results = {}
    for name in [j.strip() for j in args.judges.split(",") if j.strip()]:
        passes = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-m", "benchmarks.judge_speed", "--one", name, "--run", str(args.run)],
                                 cwd=REPO, capture_output=True, text=True, check=True)
            passes.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(passes, key=lambda p: p["judge_s"])
        results[name] = {"version": best["version"], "build_s": round(best["build_s"], 2), "judge_s": round(best["judge_s"], 2),
                         "passes_judge_s": [round(p["judge_s"], 2) for p in passes], "ms_per_name": round(1000 * best["judge_s"] / names, 2)}
        print(f"{name:<12} build {best['build_s']:6.1f} s   judging {best['judge_s']:6.1f} s   "
              f"{1000 * best['judge_s'] / names:6.1f} ms/name   ({best['version']})")
    if len(results) > 1:
        first, *rest = results
        for other in rest:
            a, b = results[first], results[other]
            print(f"{first} / {other}: judging {a['judge_s'] / b['judge_s']:.2f}x, "
                  f"build + judging {(a['build_s'] + a['judge_s']) / (b['build_s'] + b['judge_s']):.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"requests": len(work), "names": names, "judges": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
