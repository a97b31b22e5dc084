"""The original way of evaluating against ours, on the same cases and generation settings.

- naive (the original): for each adapter a fresh process loads the base plus that adapter, then
  calls ``model.generate`` once per description (batch size 1, the whole prompt every time);
- ours: one process loads the base once with every adapter, switches them with set_adapter, and
  runs DomainNameGenerator: length-sorted batches, the shared prompt prefix computed once per
  batch, rows dropped from the batch as soon as they have finished their answer.

Both load the base the same way (by default 4-bit NF4 dequantised once to fp32 on CPU), run as
worker processes of this script, so imports, model loads and peak RSS are counted the same
way. Greedy decoding: both must give the same domains for every case; disagreements are listed.
``--naive-bnb`` adds a third way: naive on bitsandbytes' own 4-bit kernels, as the original ran.

Run: ``python -m benchmarks.eval_speed [--quick|--full] [--naive-bnb] [--adapters v1,v2,v3] [--json out.json]``
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

from domain_eval.models import CPU_KERNELS

from benchmarks.common import (
    QUICK_CASES,
    REPO,
    adapter_paths,
    describe_machine,
    allowed_cases,
    machine,
    new_text,
    peak_rss_mb,
    pick_adapters,
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
    kernel: str = "dequantized"  # how 4-bit weights are multiplied on CPU (domain_eval.models.CPU_KERNELS)
    batch_size: int = 64
    max_new_tokens: int = 64
    threads: int | None = None  # torch threads; None: one per core


# ------------------------------------------------------------------------------------- worker
def naive_generate(gen: Any, description: str, max_new_tokens: int) -> tuple[str, int]:
    """The original project's loop body: one prompt, ``model.generate``, decode the new tokens."""
    import torch

    from domain_eval.prompts import build_prompt

    tok = gen.tokenizer
    enc = tok(build_prompt(tok, description), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = gen.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return new_text(tok, out[0, enc["input_ids"].shape[1]:].tolist())


def run_worker(spec: Spec) -> dict[str, Any]:
    """Load, generate, and report timings (wall-clock ``time.time()`` stamps, comparable across
    processes), outputs and this process's peak RSS."""
    started = time.time()
    import peft  # noqa: F401  (timed: importing torch/transformers/peft costs seconds per process)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from domain_eval.generation import DomainNameGenerator, GenerationConfig, rank_domains
    from domain_eval.models import configure_threads, load_base

    import_s = time.time() - started
    if spec.threads:
        torch.set_num_threads(spec.threads)
    threads = spec.threads or configure_threads(1)
    config = GenerationConfig(batch_size=spec.batch_size, max_new_tokens=spec.max_new_tokens)
    loaded = load_base(quant=spec.quant, cpu_kernel=spec.kernel)
    # safety=None: the pure-Python safety filter is identical both ways and not what is measured.
    gen = DomainNameGenerator(adapter=adapter_paths(spec.adapters), config=config, safety=None, loaded=loaded)
    load_s = gen.loaded.load_seconds + gen.adapter_load_seconds
    descriptions = [c["description"] for c in spec.cases]
    rows: list[dict[str, Any]] = []
    first: list[float] = []
    gen_s = switch_s = 0.0
    for name in gen.adapters:
        t = time.perf_counter()
        gen.use(name)
        switch_s += time.perf_counter() - t
        t = time.perf_counter()
        outputs: list[tuple[list[str], str, int]] = []
        if spec.mode == "naive":
            for d in descriptions:
                raw, count = naive_generate(gen, d, spec.max_new_tokens)
                outputs.append(([x for x, _ in rank_domains(raw, d, config.n)[0]], raw, count))
                first.append(time.time())
        else:
            for g in gen.generate(descriptions, on_batch=lambda done, total: first.append(time.time())):
                outputs.append(([x for x, _ in g.domains], g.raw, g.new_tokens))
        gen_s += time.perf_counter() - t
        for case, (domains, raw, count) in zip(spec.cases, outputs):
            rows.append({"adapter": name, "id": case["id"], "domains": domains, "raw": raw, "new_tokens": count})
    from benchmarks.bandwidth import weight_bytes

    return {
        "mode": spec.mode, "adapters": gen.adapters, "quant": gen.loaded.quant, "kernel": gen.loaded.kernel,
        "threads": threads, "started": started, "import_s": import_s, "load_s": load_s, "gen_s": gen_s,
        "switch_s": switch_s, "first_result": min(first), "peak_rss_mb": peak_rss_mb(),
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
    stem = f"{spec.mode}-{spec.kernel}-{spec.adapters[0]}"
    spec_file, out_file = tmp / f"{stem}.spec.json", tmp / f"{stem}.out.json"
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
        # ours stops a row once n domains are written, so its raw text may be a prefix of naive's
        same_raw += a["raw"] == b["raw"] or a["raw"].startswith(b["raw"])
        if a["domains"] == b["domains"]:
            same_domains += 1
        else:
            disagreements.append({"adapter": a["adapter"], "id": a["id"], "naive": a["domains"], "ours": b["domains"],
                                  "naive_raw": a["raw"], "ours_raw": b["raw"]})
    return {"cases": len(pairs), "same_domains": same_domains, "same_raw": same_raw, "disagreements": disagreements}


def report(ways: Sequence[Way], agreements: dict[str, dict[str, Any]], show_diffs: int = 10) -> str:
    """One column per way, then ours / each other way."""
    ours = ways[-1]
    others = ways[:-1]
    headers = ["metric", *[w.name for w in ways], *[f"ours / {w.name}" for w in others]]
    rows = [[label, *[get(w) for w in ways], *[ratio(get(ours), get(w)) for w in others]] for label, get in METRICS]
    lines = [table(headers, rows), ""]
    for other in others:
        lines.append(
            f"ours / {other.name}: cases/s {ratio(ours.cases_per_s, other.cases_per_s)}, wall {ratio(ours.wall_s, other.wall_s)}, "
            f"peak RSS {ratio(ours.peak_rss_mb, other.peak_rss_mb)}, first result {ratio(ours.first_result_s, other.first_result_s)}, "
            f"model load {ratio(ours.load_s, other.load_s)}"
        )
    for name, agreement in agreements.items():
        lines.append(
            f"outputs, {name} vs ours: {agreement['same_domains']}/{agreement['cases']} (adapter, case) pairs give the same "
            f"domains; raw text identical (or ours a prefix, stopped once complete) for {agreement['same_raw']}/{agreement['cases']}"
        )
        diffs = agreement["disagreements"]
        for d in diffs[:show_diffs]:
            lines.append(f"  DIFFERS {d['adapter']}/{d['id']}: {name} {d['naive']} vs ours {d['ours']}")
            lines.append(f"    {name} raw {d['naive_raw'][:120]!r}\n    ours raw {d['ours_raw'][:120]!r}")
        if len(diffs) > show_diffs:
            lines.append(f"  ... and {len(diffs) - show_diffs} more (all are in --json)")
    return "\n".join(lines)


def bandwidth_block(ways: Sequence[Way], reports: dict[str, dict[str, Any]], batch: int) -> tuple[str, dict[str, Any]]:
    """Achieved generate tokens/s of each way against the batch-1 bound for the bytes its kernel reads."""
    from benchmarks.bandwidth import BandwidthRow, machine_bandwidth, summary

    bandwidth = machine_bandwidth()
    best = max(bandwidth.values())
    by_kernel: dict[str, BandwidthRow] = {}
    for way in ways:
        rep = reports[way.name]
        row = by_kernel.setdefault(rep["kernel"], BandwidthRow(rep["kernel"], rep["weight_bytes"], best, batch=batch))
        if way.name.startswith("naive"):
            row.batch1_tps = way.gen_tokens_per_s
        else:
            row.batched_tps = way.gen_tokens_per_s
    note = (f"achieved: naive (batch 1) and ours (up to {batch} rows) generated tokens / seconds in generation, prefill "
            "included; `python -m benchmarks.bandwidth` measures decode alone.")
    rows = list(by_kernel.values())
    return summary(rows, bandwidth, note), {"copy_bytes_per_s": bandwidth, "rows": [r.to_dict() for r in rows]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_speed", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases x the trained adapters (default)")
    mode.add_argument("--full", action="store_true", help="every allowed case x v1, v2, v3")
    parser.add_argument("--adapters", default=None, help="comma list (default: every trained one of v1, v2, v3)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (overrides the mode)")
    parser.add_argument("--quant", default="4bit", choices=["4bit", "none"], help="base precision for both ways")
    parser.add_argument("--kernel", default="dequantized", choices=CPU_KERNELS,
                        help="how 4-bit weights are multiplied on CPU, both ways (default: dequantized, the library's)")
    parser.add_argument("--naive-bnb", action="store_true", help="also time naive on bitsandbytes' kernels (the original's)")
    parser.add_argument("--batch-size", type=int, default=64, help="ours: most prompts per batch (library default 64)")
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
          f"({', '.join(adapters)}), {args.quant} ({args.kernel} kernel on CPU), greedy, max_new_tokens "
          f"{args.max_new_tokens}; ours: up to {args.batch_size} rows per batch")
    info = machine()
    print(describe_machine(info), flush=True)
    warm_page_cache(adapters)
    plan = [("naive", "naive", args.kernel)]
    if args.naive_bnb:
        plan.insert(0, ("naive-bnb", "naive", "bnb"))
    ways: list[Way] = []
    reports: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        for name, mode, kernel in plan:
            way, reps = run_way(name, [Spec(mode, [a], kernel=kernel, **settings) for a in adapters], Path(tmp))
            ways.append(way)
            reports[name] = reps
        way, reps = run_way("ours", [Spec("ours", adapters, kernel=args.kernel, **settings)], Path(tmp))
        ways.append(way)
        reports["ours"] = reps
    agreements = {name: compare_outputs(reports[name], reports["ours"]) for name, _, _ in plan}
    print()
    print(report(ways, agreements, args.show_diffs))
    print()
    block, bw = bandwidth_block(ways, {name: reps[0] for name, reps in reports.items()}, min(args.batch_size, len(cases)))
    print(block)
    write_json(args.json, {
        "machine": info, "settings": {**settings, "cases": [c["id"] for c in cases], "adapters": adapters, "kernel": args.kernel},
        "ways": {w.name: w.to_dict() for w in ways}, "agreement": agreements, "bandwidth": bw,
        "workers": [{k: v for k, v in r.items() if k != "results"} for reps in reports.values() for r in reps],
    })


if __name__ == "__main__":
    main()
