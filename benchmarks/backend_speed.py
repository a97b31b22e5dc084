"""Cases/s of the ``openai`` backend against ``domain-eval serve`` at several concurrencies, beside
the ``local`` backend, in one run.

    python -m benchmarks.backend_speed [--cases 24 | --all] [--model v3] [--concurrency 1,4,16]

Work: one adapter's greedy generations (prompt, parse, safety filter, ranking; no judging) for the
allowed cases of ``cases/``, taken round-robin over categories. The server (``domain-eval serve``,
a separate process holding the model) is started first and warmed with one request; the local
backend runs in a fresh process of its own, with its model load timed apart. Each backend's domains
are compared with the local ones, case by case. On one machine the server and the client share the
cores: this measures what batching concurrent requests buys, not a GPU fleet.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, allowed_cases


def run_backend(backend: str, model: str, descriptions: list[str], url: str | None, concurrency: int) -> dict:
    """One pass in this process: connect or load (timed apart), then generate every description."""
    from domain_eval.backends import GenerationFailure, make_backend
    from domain_eval.config import EvalOptions
    from domain_eval.safety import default_filter

    options = EvalOptions(models=[model], backend=backend, backend_url=url, backend_concurrency=concurrency)
    safety = default_filter()
    t0 = time.perf_counter()
    target = make_backend(options, safety)
    if error := target.model_error(model):
        raise SystemExit(f"{backend}: {error}")
    ready = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = target.generate(model, descriptions, None)
    seconds = time.perf_counter() - t0
    return {"ready_s": ready, "generate_s": seconds,
            "domains": [None if isinstance(r, GenerationFailure) else [d for d, _ in r.domains] for r in results],
            "errors": sum(isinstance(r, GenerationFailure) for r in results)}


def _subprocess_pass(backend: str, model: str, work: Path, url: str | None, concurrency: int, limit: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.backend_speed", "--one", backend, "--model", model,
                          "--work", str(work), "--url", url or "", "--c", str(concurrency), "--limit", str(limit)],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{backend} pass failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24, help="allowed cases, round-robin over categories (default: 24)")
    parser.add_argument("--all", action="store_true", help="every allowed case")
    parser.add_argument("--model", default="v3")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--c", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        descriptions = json.loads(args.work.read_text())[: args.limit or None]
        print(json.dumps(run_backend(args.one, args.model, descriptions, args.url or None, args.c)))
        return 0

    from domain_eval.testing import start_server, stop_server

    cases = allowed_cases(None if args.all else args.cases)
    print(f"{len(cases)} cases, model {args.model}; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="backend-speed-") as tmp:
        work = Path(tmp) / "descriptions.json"
        work.write_text(json.dumps([c["description"] for c in cases], ensure_ascii=False))
        local = _subprocess_pass("local", args.model, work, None, 1)
        rows.append(("local (this process, batched)", "-", local))
        proc, url = start_server(["--model", args.model], Path(tmp) / "serve.log")
        try:
            _subprocess_pass("openai", args.model, work, url, 4, limit=4)  # warm: first batches pay one-off costs
            for c in [int(x) for x in args.concurrency.split(",")]:
                rows.append(("openai -> domain-eval serve", str(c), _subprocess_pass("openai", args.model, work, url, c)))
        finally:
            stop_server(proc)
    header = f"{'backend':<32} {'concurrency':>11} {'cases/s':>8} {'generate s':>10} {'ready s':>8} {'vs local':>8} {'same domains':>13} {'errors':>6}"
    print(header)
    print("-" * len(header))
    base = local["generate_s"]
    table = []
    for name, c, r in rows:
        same = sum(a == b for a, b in zip(r["domains"], local["domains"]))
        rate = len(cases) / r["generate_s"]
        print(f"{name:<32} {c:>11} {rate:>8.2f} {r['generate_s']:>10.1f} {r['ready_s']:>8.1f} {base / r['generate_s']:>7.2f}x "
              f"{same:>6}/{len(cases):<6} {r['errors']:>6}")
        table.append({"backend": name, "concurrency": c, "cases_per_s": round(rate, 3), "generate_s": round(r["generate_s"], 2),
                      "ready_s": round(r["ready_s"], 2), "same_domains": same, "errors": r["errors"]})
    if args.json:
        args.json.write_text(json.dumps({"cases": len(cases), "model": args.model, "rows": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
