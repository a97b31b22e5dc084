"""Decoding for quality: each option's effect on slot score, measured on dev descriptions.

    python -m benchmarks.decoding_quality [--model v3] [--variants raw,filters,fill,all] [--json out.json]

Descriptions: the judge corpus's *dev* split (``data/ratings/descriptions.jsonl``; 60 businesses
in 9 languages). They are disjoint from ``cases/`` (what the evaluation reports) and from every
training set, so choosing a decoding here does not tune on the evaluation. Each variant is one
greedy pass of the model over them on the embedded base (4-bit, dequantised), judged by the
default judge the way the plugin judges: n = 5 slots, empty slots at the floor, TLD variants
filling one slot. Each variant is compared with ``raw`` by a paired bootstrap over descriptions.

Variants (GenerationConfig fields):
  raw      today's decoding: the first 5 valid, safe domains of the greedy answer;
  filters  reject_degenerate + max_tld_variants=1;
  fill     fill_slots: end-of-turn is masked until the answer holds 5 usable names;
  all      filters + fill;
  pool4    samples=4: four seeded samples (temperature 0.8, top-p 0.95) whose names are pooled
           after the greedy answer's, with the filters; the first 5 usable names are kept;
  pool4-nofilter  the same without the filters;
  distinct distinct_lines: a line may not go on as an earlier line after its first token;
  distinct-filters  distinct + filters;
  pick     distinct + filters + pool4 (samples only when the answer is still short).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import REPO, adapter_paths, setup_env

VARIANTS = {
    "raw": {},
    "filters": {"reject_degenerate": True, "max_tld_variants": 1},
    "fill": {"fill_slots": True},
    "all": {"reject_degenerate": True, "max_tld_variants": 1, "fill_slots": True},
    "pool4": {"reject_degenerate": True, "max_tld_variants": 1, "samples": 4},
    "pool4-nofilter": {"samples": 4},
    "distinct": {"distinct_lines": True},
    "distinct-filters": {"distinct_lines": True, "reject_degenerate": True, "max_tld_variants": 1},
    "pick": {"distinct_lines": True, "reject_degenerate": True, "max_tld_variants": 1, "samples": 4},
}
N = 5


def dev_descriptions(split: str = "dev") -> list[str]:
    rows = [json.loads(line) for line in (REPO / "data" / "ratings" / "descriptions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["description"] for r in rows if r["split"] == split]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoding_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="v3", help="adapter name or folder (default: v3)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--limit", type=int, default=0, help="first N descriptions only (0: all)")
    parser.add_argument("--split", default="dev", help="the judge corpus split to use (default: dev)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write per-description results here")
    args = parser.parse_args(argv)
    setup_env()

    from domain_eval.generation import DomainNameGenerator, GenerationConfig
    from domain_eval.judges import make_judge
    from domain_eval.models import load_base
    from domain_eval.scoring import score_sample
    from domain_eval.stats import bootstrap_ci, paired_bootstrap_diff

    descriptions = dev_descriptions(args.split)
    if args.limit:
        descriptions = descriptions[: args.limit]
    judge = make_judge()
    loaded = load_base("smollm2-135m", quant="4bit")
    results: dict[str, dict] = {}
    for variant in args.variants.split(","):
        config = GenerationConfig(n=N, max_new_tokens=args.max_new_tokens, **VARIANTS[variant])
        gen = DomainNameGenerator(adapter=adapter_paths([args.model]), config=config, loaded=loaded)
        start = time.perf_counter()
        generations = gen.generate(descriptions)
        seconds = time.perf_counter() - start
        samples = []
        for g in generations:
            judged = judge.score(g.description, [d for d, _ in g.domains]).scores if g.domains else []
            samples.append(score_sample(g, judged, N))
        results[variant] = {
            "seconds": seconds, "tokens": sum(g.new_tokens for g in generations),
            "scores": [s.score for s in samples], "yield": [s.yield_ for s in samples],
            "names": [s.distinct_names for s in samples],
            "quality": [s.quality for s in samples if s.quality is not None],
            "domains": [[d for d, _ in g.domains] for g in generations],
        }
        print(f"{variant}: {seconds:.0f} s", flush=True)
        if args.json:  # after every variant: a long run that is stopped keeps what it measured
            args.json.write_text(json.dumps({"model": args.model, "descriptions": descriptions, "results": results},
                                            ensure_ascii=False, indent=1))

    raw = results.get("raw")
    print(f"\n{args.model} on {len(descriptions)} dev descriptions (judge {judge.version})")
    print(f"{'variant':<9} {'slot score':>10} {'95% CI':>13} {'vs raw':>7} {'paired 95% CI':>15} {'yield':>6} {'names':>6} {'quality':>7} {'tokens':>7} {'s':>5}")
    for variant, r in results.items():
        mean, lo, hi = bootstrap_ci(r["scores"])
        diff = paired_bootstrap_diff(r["scores"], raw["scores"]) if raw and variant != "raw" else None
        vs = f"{diff[0]:+.2f}" if diff else "-"
        ci = f"[{diff[1]:+.2f}, {diff[2]:+.2f}]" if diff else "-"
        print(f"{variant:<9} {mean:>10.2f} {f'[{lo:.2f}, {hi:.2f}]':>13} {vs:>7} {ci:>15} "
              f"{sum(r['yield']) / len(r['yield']):>6.2f} {sum(r['names']) / len(r['names']):>6.2f} {sum(r['quality']) / max(1, len(r['quality'])):>7.2f} {r['tokens']:>7} {r['seconds']:>5.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
