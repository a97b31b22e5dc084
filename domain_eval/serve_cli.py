"""``domain-eval serve`` (an OpenAI-compatible server) and ``domain-eval export-base`` (the embedded
base as a Hugging Face folder, e.g. for ``vllm serve``). Heavy imports stay inside the commands."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from domain_eval.models import CPU_KERNELS, DEFAULT_BASE, QUANT_CHOICES

EXIT_USAGE, EXIT_LOAD = 2, 4


def _status(message: str) -> None:
    print(f"domain-eval: {message}", file=sys.stderr, flush=True)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the base and adapters over an OpenAI-compatible HTTP API",
        description="Serve the base model and adapters over an OpenAI-compatible API: GET /v1/models, "
        "POST /v1/completions and POST /v1/chat/completions; the request's 'model' picks the adapter "
        "('base': none). Concurrent requests are decoded in batches on one loaded base. Evaluate against "
        "it with: pytest --backend openai --backend-url http://HOST:PORT/v1",
        epilog="example: domain-eval serve --model v1,v2,v3 --port 8765",
    )
    p.add_argument("--model", action="append", default=[], metavar="NAMES",
                   help="adapters to serve: comma list, repeatable; names in --models-dir, folders, or 'all' "
                   "(default: every adapter in --models-dir). The bare base is always served as 'base'.")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base model (default: {DEFAULT_BASE}, embedded)")
    p.add_argument("--models-dir", default="models", help="where named adapters live (default: models)")
    p.add_argument("--quant", choices=QUANT_CHOICES, default="4bit", help="default: 4bit, as local evaluation")
    p.add_argument("--cpu-kernel", choices=CPU_KERNELS, default="dequantized",
                   help="4-bit on CPU (default: dequantized: a row's text does not depend on its batch)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--max-batch", type=int, default=32, help="most requests decoded together (default: 32)")
    p.add_argument("--batch-window-ms", type=float, default=10.0,
                   help="how long to wait for more requests after one arrives, to batch them (default: 10)")
    p.add_argument("--no-safety", action="store_true",
                   help="do not refuse descriptions the safety filter blocks (default: refuse them with the reason)")
    p.set_defaults(func=run_serve)

    e = subparsers.add_parser(
        "export-base",
        help="write the embedded base model as a Hugging Face folder (for vLLM, TGI, SGLang)",
        description="Write the converted embedded base (weights, config, tokenizer, chat template) as a "
        "Hugging Face folder, so that 'vllm serve DIR --enable-lora --lora-modules v3=models/v3' serves the "
        "shipped adapters.",
    )
    e.add_argument("--out", required=True, help="folder to write (must not exist, or be empty)")
    e.add_argument("--base", default=DEFAULT_BASE, help=f"embedded base to export (default: {DEFAULT_BASE})")
    e.set_defaults(func=run_export)


def run_serve(args: argparse.Namespace) -> int:
    from domain_eval.config import ConfigError, EvalOptions, check_models, resolve_models
    from domain_eval.models import ModelLoadError

    if not 0 < args.port < 65536:
        print(f"error: --port must be between 1 and 65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    if args.max_batch < 1 or args.batch_window_ms < 0:
        print("error: --max-batch must be >= 1 and --batch-window-ms >= 0", file=sys.stderr)
        return EXIT_USAGE
    models = resolve_models(args.model, args.models_dir)
    try:
        # The same checks as an evaluation: every adapter exists, is intact, fits the base.
        problems = check_models(EvalOptions(models=models, models_dir=args.models_dir, base=args.base, quant=args.quant))
    except ConfigError as exc:
        problems = exc.problems
    if problems:
        print("error: " + "\n  ".join(problems), file=sys.stderr)
        return EXIT_USAGE

    import uvicorn

    from domain_eval.server import ServeConfig, create_app, load_service

    config = ServeConfig(models=models, base=args.base, models_dir=args.models_dir, quant=args.quant,
                         cpu_kernel=args.cpu_kernel, max_batch=args.max_batch,
                         batch_window_s=args.batch_window_ms / 1000, safety=not args.no_safety)
    _status(f"loading {args.base} ({args.quant}) with adapters: {', '.join(m for m in models if m != 'base') or 'none'}")
    try:
        service = load_service(config, progress=_status)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOAD
    _status(f"serving {', '.join(service.cards)} at http://{args.host}:{args.port}/v1 "
            f"({service.generator.loaded.kernel} on {service.generator.loaded.device}); Ctrl-C stops")
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from domain_eval.models import EMBEDDED, ModelLoadError, ensure_embedded

    out = Path(args.out)
    if args.base not in EMBEDDED:
        print(f"error: --base {args.base!r} is not an embedded base ({', '.join(EMBEDDED)}); "
              "other bases already are Hugging Face folders or hub ids", file=sys.stderr)
        return EXIT_USAGE
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out} exists and is not an empty folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        resolved = ensure_embedded(args.base, progress=_status)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOAD
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(resolved.source).iterdir()):
        if item.is_file():
            shutil.copy2(item, out / item.name)
    _status(f"wrote {args.base} (GGUF sha256 {resolved.file_hash[:12]}) to {out}; serve it with: "
            f"vllm serve {out} --served-model-name base --enable-lora --max-lora-rank 16 "
            "--lora-modules v1=models/v1 v2=models/v2 v3=models/v3")
    return 0
