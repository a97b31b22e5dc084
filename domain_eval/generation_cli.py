"""``domain-eval generate``: suggest domains for one description."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from domain_eval.models import BEST, CPU_KERNELS, DEFAULT_BASE, QUANT_CHOICES

# EXIT_EMPTY: the model answered but gave no valid domain; a script must not take that for success.
EXIT_USAGE, EXIT_BLOCKED, EXIT_LOAD, EXIT_EMPTY = 2, 3, 4, 5


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="suggest domain names for a business description",
        description="Suggest domain names for a business description, ranked by confidence. "
        "Unsafe descriptions are refused (exit 3) before any model loads; an answer with no valid domain exits 5.",
    )
    p.add_argument("description", help="the business description, in any language")
    p.add_argument("--model", default=BEST, help="adapter name in models/ (v1-v4), adapter folder, 'base' for the bare base, "
                   "or 'best': the best shipped adapter for --base (default: best, today v4 on the embedded base)")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base model: '{DEFAULT_BASE}' (embedded, offline), an HF id or a local folder (default: {DEFAULT_BASE})")
    p.add_argument("--quant", choices=QUANT_CHOICES, default="4bit", help="4-bit NF4 via bitsandbytes, or full precision (default: 4bit)")
    p.add_argument("--cpu-kernel", choices=CPU_KERNELS, default="dequantized",
                   help="4-bit on CPU: NF4 dequantised once to fp32 (same output alone or batched) or bitsandbytes' "
                   "kernels (faster, rounding depends on the batch) (default: dequantized)")
    p.add_argument("--models-dir", default="models", help="where named adapters live, relative to the current directory (default: models; "
                   "when it holds none, the adapters shipped in the package)")
    p.add_argument("-n", type=int, default=5, help="number of suggestions (default: 5)")
    p.add_argument("--seed", type=int, default=None, help="sample with this seed (default: greedy decoding)")
    p.add_argument("--pick", action=argparse.BooleanOptionalAction, default=None,
                   help="decoding for quality (default: on with --backend local): when the answer holds fewer than -n usable "
                   "names, pool the names of 4 seeded samples; drop degenerate names (paintandpaint) and extra TLD variants "
                   "of one name. --no-pick prints the model's first answer as it is")
    p.add_argument("--distinct-lines", action=argparse.BooleanOptionalAction, default=None,
                   help="greedy decoding where a line may not go on as an earlier line after its first token, so the model "
                   "cannot repeat a name or restate it under another TLD (default: on with --backend local). "
                   "--no-distinct-lines --no-pick prints the plain greedy answer")
    p.add_argument("--safety-policy", action="append", default=[], metavar="PATH", help="extra safety policy YAML (repeatable)")
    p.add_argument("--json", action="store_true", help='print [{"domain": ..., "confidence": ...}, ...]')
    p.add_argument("--backend", choices=("local", "openai"), default="local",
                   help="local: load the model here (default); openai: ask an OpenAI-compatible server at --backend-url "
                   "(domain-eval serve, vLLM...) for --model, with the same prompt")
    p.add_argument("--backend-url", default=None, help="the server's API root for --backend openai, e.g. http://127.0.0.1:8765/v1")
    p.add_argument("--backend-api-key", default=None, metavar="ENV_VAR",
                   help="NAME of the environment variable holding the server's API key (default: OPENAI_API_KEY, when set)")
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

    if args.model == BEST:
        from domain_eval.models import ModelLoadError, best_adapter

        try:
            args.model = best_adapter(args.base)
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_LOAD
        _status(f"domain-eval: using adapter '{args.model}', the best shipped one for {args.base} (--model base for the bare base)")
    if args.backend == "openai":
        for flag, value in (("--pick", args.pick), ("--distinct-lines", args.distinct_lines)):
            if value:
                print(f"error: {flag} runs on the local backend only; with --backend openai the server's answer is printed "
                      "as it is", file=sys.stderr)
                return EXIT_USAGE
        return _generate_remote(args, description, safety)
    pick = args.pick is not False
    distinct = args.distinct_lines is not False
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
            config=(GenerationConfig.picking if pick else GenerationConfig)(n=args.n, distinct_lines=distinct),
            progress=lambda m: _status(f"domain-eval: {m}"),
            safety=safety if safety is not None else "default",
        )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOAD
    loaded = time.perf_counter()
    _status(f"domain-eval: loaded in {loaded - start:.1f} s ({gen.loaded.quant}, {gen.loaded.kernel} on {gen.loaded.device}); generating ...")
    result = gen.generate([description], n=args.n, seed=args.seed)[0]
    how = f", names pooled from {len(result.pooled)} extra samples" if result.pooled else ""
    _status(f"domain-eval: generated in {time.perf_counter() - loaded:.1f} s ({result.new_tokens} tokens{how})")
    return _print(args, result)


def _generate_remote(args: argparse.Namespace, description: str, safety: Any) -> int:
    """The same prompt and parsing as local generation; the text comes from the server."""
    from domain_eval.backends import GenerationFailure
    from domain_eval.config import ConfigError, EvalOptions
    from domain_eval.openai_backend import OpenAIBackend

    try:
        options = EvalOptions(models=[args.model], base=args.base, n=args.n, backend="openai",
                              backend_url=args.backend_url, backend_api_key=args.backend_api_key, backend_concurrency=1)
    except ConfigError as exc:
        print("error: " + "\n  ".join(exc.problems), file=sys.stderr)
        return EXIT_USAGE
    backend = OpenAIBackend(options, safety)
    start = time.perf_counter()
    if error := backend.model_error(args.model):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD
    result = backend.generate(args.model, [description], args.seed)[0]
    if isinstance(result, GenerationFailure):
        print(f"error: {result.reason}", file=sys.stderr)
        return EXIT_LOAD
    _status(f"domain-eval: {args.model} at {args.backend_url} answered in {time.perf_counter() - start:.1f} s "
            f"({result.new_tokens} tokens)")
    return _print(args, result)


def _print(args: argparse.Namespace, result: Any) -> int:
    if args.json:
        print(json.dumps([{"domain": d, "confidence": c} for d, c in result.domains], ensure_ascii=False))
    else:
        from tabulate import tabulate

        rows = [(i + 1, d, f"{c:.2f}") for i, (d, c) in enumerate(result.domains)]
        if rows:
            print(tabulate(rows, headers=["#", "domain", "confidence"], tablefmt="simple"))
    if result.dropped_unsafe:
        _status(f"domain-eval: dropped {len(result.dropped_unsafe)} unsafe suggestion(s): {', '.join(result.dropped_unsafe)}")
    if not result.domains:
        raw = " ".join(result.raw.split())
        _status(f"error: model '{args.model}' gave no valid domain; its raw answer: {raw[:300]!r}")
        return EXIT_EMPTY
    return 0
