"""``domain-eval generate``: suggest domains for one description."""
from __future__ import annotations

import argparse
import json
import sys
import time

from domain_eval.models import CPU_KERNELS, DEFAULT_BASE, QUANT_CHOICES

EXIT_USAGE, EXIT_BLOCKED, EXIT_LOAD = 2, 3, 4


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="suggest domain names for a business description",
        description="Suggest domain names for a business description, ranked by confidence. "
        "Unsafe descriptions are refused (exit 3) before any model loads.",
    )
    p.add_argument("description", help="the business description, in any language")
    p.add_argument("--model", default="base", help="adapter name in models/ (v1, v2, v3), adapter folder, or 'base' (default: base)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base model: '{DEFAULT_BASE}' (embedded, offline), an HF id or a local folder (default: {DEFAULT_BASE})")
    p.add_argument("--quant", choices=QUANT_CHOICES, default="4bit", help="4-bit NF4 via bitsandbytes, or full precision (default: 4bit)")
    p.add_argument("--cpu-kernel", choices=CPU_KERNELS, default="dequantized",
                   help="4-bit on CPU: NF4 dequantised once to fp32 (same output alone or batched) or bitsandbytes' "
                   "kernels (faster, rounding depends on the batch) (default: dequantized)")
    p.add_argument("--models-dir", default="models", help="where named adapters live, relative to the current directory (default: models; "
                   "when it holds none, the adapters shipped in the package)")
    p.add_argument("-n", type=int, default=5, help="number of suggestions (default: 5)")
    p.add_argument("--seed", type=int, default=None, help="sample with this seed (default: greedy decoding)")
    p.add_argument("--safety-policy", action="append", default=[], metavar="PATH", help="extra safety policy YAML (repeatable)")
    p.add_argument("--json", action="store_true", help='print [{"domain": ..., "confidence": ...}, ...]')
    p.set_defaults(func=run)


def _status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    description = " ".join(args.description.split())
    if not description:
        print("error: the description is empty; give a business description, e.g. 'organic coffee shop'", file=sys.stderr)
        return EXIT_USAGE
    if args.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    safety = None
    try:
        from domain_eval.safety import SafetyFilter, default_filter

        safety = SafetyFilter(extra_policies=args.safety_policy) if args.safety_policy else default_filter()
        verdict = safety.check(description)
        if verdict.blocked:
            print(f"blocked: {verdict.reason}", file=sys.stderr)
            if args.json:
                print(json.dumps({"blocked": True, **verdict.to_dict()}))
            return EXIT_BLOCKED
    except ImportError:  # safety module not installed in this build
        pass
    except ValueError as exc:  # a malformed policy file
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from domain_eval.generation import DomainNameGenerator, GenerationConfig
    from domain_eval.models import ModelLoadError

    start = time.perf_counter()
    try:
        _status(f"domain-eval: loading {args.base} ({args.quant}) with adapter '{args.model}' ...")
        gen = DomainNameGenerator(
            base_model=args.base,
            adapter=None if args.model == "base" else args.model,
            quant=args.quant,
            cpu_kernel=args.cpu_kernel,
            models_dir=args.models_dir,
            config=GenerationConfig(n=args.n),
            progress=lambda m: _status(f"domain-eval: {m}"),
            safety=safety if safety is not None else "default",
        )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOAD
    loaded = time.perf_counter()
    _status(f"domain-eval: loaded in {loaded - start:.1f} s ({gen.loaded.quant}, {gen.loaded.kernel} on {gen.loaded.device}); generating ...")
    result = gen.generate([description], n=args.n, seed=args.seed)[0]
    _status(f"domain-eval: generated in {time.perf_counter() - loaded:.1f} s ({result.new_tokens} tokens)")
    if args.json:
        print(json.dumps([{"domain": d, "confidence": c} for d, c in result.domains], ensure_ascii=False))
    else:
        from tabulate import tabulate

        rows = [(i + 1, d, f"{c:.2f}") for i, (d, c) in enumerate(result.domains)]
        print(tabulate(rows, headers=["#", "domain", "confidence"], tablefmt="simple"))
        if not rows:
            print("(the model produced no valid domain; raw output below)")
            print(result.raw)
    if result.dropped_unsafe:
        _status(f"domain-eval: dropped {len(result.dropped_unsafe)} unsafe suggestion(s): {', '.join(result.dropped_unsafe)}")
    return 0
