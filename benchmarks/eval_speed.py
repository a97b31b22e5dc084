"""The original way of evaluating against ours, on the same cases and generation settings.

- naive (the original): for each adapter a fresh process loads the base plus that adapter, then
  calls generate once per description (batch size 1);
- ours: one process loads the base once with every adapter, switches them with set_adapter, and
  generates in batches sorted by prompt length.

Both run as worker processes of this script, so imports, model loads and peak RSS are counted
the same way. Greedy decoding: both must give the same domains for every case; disagreements
are listed with the left padding the case got in its batch.

Run: ``python -m benchmarks.eval_speed [--quick|--full] [--adapters v1,v2,v3] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.common import (
    QUICK_CASES,
    REPO,
    adapter_paths,
    describe_machine,
    allowed_cases,
    left_padding,
    machine,
    peak_rss_mb,
    pick_adapters,
    prompt_lengths,
    ratio,
    setup_env,
    table,
    warm_page_cache,
    write_json,
)


@dataclass
class Spec:
    """What one worker process does."""

    mode: str  # "naive" or "ours"
    adapters: list[str]
    cases: list[dict[str, str]]
    quant: str = "4bit"
    batch_size: int = 16
    max_new_tokens: int = 64
    threads: int | None = None  # torch threads; None: one per core


# ------------------------------------------------------------------------------------- worker
def run_worker(spec: Spec) -> dict[str, Any]:
    """Load, generate, and report timings (wall-clock ``time.time()`` stamps, comparable across
    processes), outputs and this process's peak RSS."""
    started = time.time()
    import peft  # noqa: F401  (timed: importing torch/transformers/peft costs seconds per process)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from domain_eval.generation import DomainNameGenerator, GenerationConfig
    from domain_eval.models import configure_threads

    import_s = time.time() - started
    if spec.threads:
        torch.set_num_threads(spec.threads)
    threads = spec.threads or configure_threads(1)
    naive = spec.mode == "naive"
    config = GenerationConfig(
        batch_size=1 if naive else spec.batch_size, max_new_tokens=spec.max_new_tokens, sort_by_length=not naive
    )
    # safety=None: the pure-Python safety filter is identical both ways and not what is measured.
    gen = DomainNameGenerator(adapter=adapter_paths(spec.adapters), quant=spec.quant, config=config, safety=None)
    load_s = gen.loaded.load_seconds + gen.adapter_load_seconds
    descriptions = [c["description"] for c in spec.cases]
    pads = left_padding(prompt_lengths(gen.tokenizer, descriptions, config.n), config.batch_size, config.sort_by_length)
    rows: list[dict[str, Any]] = []
    first: list[float] = []
    gen_s = switch_s = 0.0
    for name in gen.adapters:
        t = time.perf_counter()
        gen.use(name)
        switch_s += time.perf_counter() - t
        t = time.perf_counter()
        if naive:  # the original: one generate call per description
            outputs = []
            for d in descriptions:
                outputs += gen.generate([d])
                first.append(time.time())
        else:
            outputs = gen.generate(descriptions, on_batch=lambda done, total: first.append(time.time()))
        gen_s += time.perf_counter() - t
        for case, out, pad in zip(spec.cases, outputs, pads):
            rows.append({"adapter": name, "id": case["id"], "domains": [d for d, _ in out.domains],
                         "raw": out.raw, "new_tokens": out.new_tokens, "left_pad": pad})
    from benchmarks.bandwidth import weight_bytes

    return {
        "mode": spec.mode, "adapters": gen.adapters, "quant": gen.loaded.quant, "threads": threads,
        "started": started, "import_s": import_s, "load_s": load_s, "gen_s": gen_s, "switch_s": switch_s,
        "first_result": min(first), "peak_rss_mb": peak_rss_mb(),
        "weight_bytes": weight_bytes(gen.model, gen.adapters[0]), "results": rows,
    }


# ------------------------------------------------------------------------------------- driver
@dataclass
class Way:
    """One way's figures, summed over its processes (peak RSS: the largest process)."""

    name: str
    processes: int
    cases: int
    new_tokens: int
    wall_s: float
    gen_s: float
    load_s: float
    import_s: float
    switch_s: float
    first_result_s: float
    peak_rss_mb: float

    @property
    def cases_per_s(self) -> float:
        return self.cases / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s

    @property
    def gen_tokens_per_s(self) -> float:
        return self.new_tokens / self.gen_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cases_per_s": self.cases_per_s, "tokens_per_s": self.tokens_per_s,
                "gen_tokens_per_s": self.gen_tokens_per_s}


# (label, getter): one row of the side-by-side table
METRICS: list[tuple[str, Callable[[Way], float]]] = [
    ("cases/s (end to end)", lambda w: w.cases_per_s),
    ("generated tokens/s (end to end)", lambda w: w.tokens_per_s),
    ("generated tokens/s (in generate)", lambda w: w.gen_tokens_per_s),
    ("wall s", lambda w: w.wall_s),
    ("time to first result s", lambda w: w.first_result_s),
    ("model load s (base + adapters)", lambda w: w.load_s),
    ("imports s (torch, transformers, peft)", lambda w: w.import_s),
    ("set_adapter calls ms (total)", lambda w: 1000 * w.switch_s),
    ("peak RSS MB (largest process)", lambda w: w.peak_rss_mb),
    ("processes", lambda w: w.processes),
    ("generated tokens", lambda w: w.new_tokens),
]


def spawn(spec: Spec, tmp: Path) -> tuple[dict[str, Any], float, float]:
    """Run one worker; returns its report, the spawn time and its wall seconds (as seen from here)."""
    spec_file, out_file = tmp / f"{spec.mode}-{spec.adapters[0]}.spec.json", tmp / f"{spec.mode}-{spec.adapters[0]}.out.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    cmd = [sys.executable, "-m", "benchmarks.eval_speed", "--worker", str(spec_file), "--out", str(out_file)]
    spawned = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - spawned
    if proc.returncode != 0:
        sys.exit(f"{spec.mode} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out_file.read_text()), spawned, wall


def run_way(name: str, specs: list[Spec], tmp: Path) -> tuple[Way, list[dict[str, Any]]]:
    reports, walls, spawned = [], [], []
    for spec in specs:
        report, t0, wall = spawn(spec, tmp)
        reports.append(report)
        walls.append(wall)
        spawned.append(t0)
        print(f"  {name} [{', '.join(report['adapters'])}]: {wall:.1f} s, peak RSS {report['peak_rss_mb']:.0f} MB", flush=True)
    way = Way(
        name=name, processes=len(reports), cases=len([r for rep in reports for r in rep["results"]]),
        new_tokens=sum(r["new_tokens"] for rep in reports for r in rep["results"]), wall_s=sum(walls),
        gen_s=sum(r["gen_s"] for r in reports), load_s=sum(r["load_s"] for r in reports),
        import_s=sum(r["import_s"] for r in reports), switch_s=sum(r["switch_s"] for r in reports),
        first_result_s=reports[0]["first_result"] - spawned[0], peak_rss_mb=max(r["peak_rss_mb"] for r in reports),
    )
    return way, reports


def compare_outputs(naive: list[dict[str, Any]], ours: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (adapter, case): same domains? same raw text? Disagreements carry both outputs."""
    mine = {(r["adapter"], r["id"]): r for rep in ours for r in rep["results"]}
    same_domains = same_raw = 0
    disagreements = []
    pairs = [(r, mine[(r["adapter"], r["id"])]) for rep in naive for r in rep["results"]]
    for a, b in pairs:
        same_raw += a["raw"] == b["raw"]
        if a["domains"] == b["domains"]:
            same_domains += 1
        else:
            disagreements.append({"adapter": a["adapter"], "id": a["id"], "left_pad_in_batch": b["left_pad"],
                                  "naive": a["domains"], "ours": b["domains"], "naive_raw": a["raw"], "ours_raw": b["raw"]})
    return {"cases": len(pairs), "same_domains": same_domains, "same_raw": same_raw, "disagreements": disagreements}


def report(naive: Way, ours: Way, agreement: dict[str, Any], show_diffs: int = 10) -> str:
    rows = [[label, get(naive), get(ours), ratio(get(ours), get(naive))] for label, get in METRICS]
    lines = [table(["metric", "naive", "ours", "ours / naive"], rows), ""]
    lines.append(
        f"ours / naive: cases/s {ratio(ours.cases_per_s, naive.cases_per_s)}, "
        f"tokens/s {ratio(ours.tokens_per_s, naive.tokens_per_s)}, wall {ratio(ours.wall_s, naive.wall_s)}, "
        f"peak RSS {ratio(ours.peak_rss_mb, naive.peak_rss_mb)}, first result {ratio(ours.first_result_s, naive.first_result_s)}, "
        f"model load {ratio(ours.load_s, naive.load_s)}"
    )
    lines.append(
        f"outputs: {agreement['same_domains']}/{agreement['cases']} (adapter, case) pairs give the same domains; "
        f"raw text identical for {agreement['same_raw']}/{agreement['cases']}"
    )
    diffs = agreement["disagreements"]
    if diffs:
        padded = sum(d["left_pad_in_batch"] > 0 for d in diffs)
        lines.append(f"  {len(diffs)} differ; {padded} of them were left-padded in their batch (all are in --json)")
    for d in diffs[:show_diffs]:
        lines.append(f"  DIFFERS {d['adapter']}/{d['id']} (left pad {d['left_pad_in_batch']} tokens in its batch): "
                     f"naive {d['naive']} vs ours {d['ours']}")
        lines.append(f"    naive raw {d['naive_raw'][:120]!r}\n    ours  raw {d['ours_raw'][:120]!r}")
    if len(diffs) > show_diffs:
        lines.append(f"  ... and {len(diffs) - show_diffs} more")
    if diffs:
        lines.append("  (why? `python -m benchmarks.tuning --sweeps padding,kernel` reruns each differing case in a batch\n"
                     "   of copies of itself (same batch shape, no padding) and compares 4-bit kernel settings and fp32)")
    return "\n".join(lines)


def bandwidth_block(naive: Way, ours: Way, weight_bytes: int, quant: str, batch: int) -> tuple[str, dict[str, Any]]:
    from benchmarks.bandwidth import BandwidthRow, machine_bandwidth, summary

    bandwidth = machine_bandwidth()
    row = BandwidthRow(quant, weight_bytes, max(bandwidth.values()), naive.gen_tokens_per_s, ours.gen_tokens_per_s, batch)
    note = (f"achieved: naive (batch 1) and ours (batch {batch}) generated tokens / seconds in generate, prefill "
            "included; `python -m benchmarks.bandwidth` measures decode alone, for 4-bit and fp32.")
    return summary([row], bandwidth, note), {"copy_bytes_per_s": bandwidth, **row.to_dict()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_speed", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases x the trained adapters (default)")
    mode.add_argument("--full", action="store_true", help="every allowed case x v1, v2, v3")
    parser.add_argument("--adapters", default=None, help="comma list (default: every trained one of v1, v2, v3)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (overrides the mode)")
    parser.add_argument("--quant", default="4bit", choices=["4bit", "none"], help="base precision for both ways")
    parser.add_argument("--batch-size", type=int, default=16, help="ours: prompts per batch")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="both ways")
    parser.add_argument("--show-diffs", type=int, default=10, help="disagreements to print in full (default 10)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: one per core)")
    parser.add_argument("--json", default=None, help="also write every figure and output here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup_env()
    if args.worker:
        Path(args.out).write_text(json.dumps(run_worker(Spec(**json.loads(Path(args.worker).read_text())))))
        return

    adapters = pick_adapters(args.adapters, args.full)
    cases = allowed_cases(args.cases or (None if args.full else QUICK_CASES))
    settings = dict(cases=cases, quant=args.quant, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                    threads=args.threads)
    print(f"eval_speed ({'full' if args.full else 'quick'}): {len(cases)} cases x {len(adapters)} adapters "
          f"({', '.join(adapters)}), {args.quant}, greedy, max_new_tokens {args.max_new_tokens}; "
          f"ours: batch {args.batch_size}, sorted by length")
    info = machine()
    print(describe_machine(info), flush=True)
    warm_page_cache(adapters)
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        naive, naive_reports = run_way("naive", [Spec("naive", [a], **settings) for a in adapters], Path(tmp))
        ours, ours_reports = run_way("ours", [Spec("ours", adapters, **settings)], Path(tmp))
    agreement = compare_outputs(naive_reports, ours_reports)
    print()
    print(report(naive, ours, agreement, args.show_diffs))
    print()
    block, bw = bandwidth_block(naive, ours, ours_reports[0]["weight_bytes"], ours_reports[0]["quant"], min(args.batch_size, len(cases)))
    print(block)
    write_json(args.json, {
        "machine": info, "settings": {**settings, "cases": [c["id"] for c in cases], "adapters": adapters},
        "naive": naive.to_dict(), "ours": ours.to_dict(), "agreement": agreement, "bandwidth": bw,
        "workers": [{k: v for k, v in r.items() if k != "results"} for r in naive_reports + ours_reports],
    })


if __name__ == "__main__":
    main()
