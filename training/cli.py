"""``domain-eval train`` (also ``python -m training``): QLoRA fine-tuning from the command line."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from domain_eval.models import CPU_KERNELS, DEFAULT_BASE, QUANT_CHOICES


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="QLoRA fine-tune a base model on a domain dataset",
        description="QLoRA fine-tuning. Defaults are the original project's config: 4-bit NF4, double quantisation, "
        "bf16 compute; LoRA r=16, alpha=32, dropout 0.05 on q_proj,v_proj. Loss is on answer tokens only, "
        "with dynamic padding. Writes the adapter and training_meta.json into --output.",
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="JSONL dataset, e.g. data/domain_dataset_v3.jsonl")
    p.add_argument("--output", required=True, help="adapter folder to write, e.g. models/v3")
    p.add_argument("--base", dest="base_model", default=DEFAULT_BASE, help=f"base model: embedded alias, HF id or folder (default: {DEFAULT_BASE})")
    p.add_argument("--quant", choices=QUANT_CHOICES, default="4bit", help="4bit (QLoRA, default) or none (LoRA on full precision)")
    p.add_argument("--cpu-kernel", choices=CPU_KERNELS, default="dequantized",
                   help="4-bit on CPU: 'dequantized' (default) trains over the NF4 weights held as frozen fp32 "
                   "layers, ~15x faster; 'bnb' keeps bitsandbytes' Linear4bit (how v1-v3 were trained)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r (default: 16)")
    p.add_argument("--alpha", type=int, default=32, help="LoRA alpha (default: 32)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (default: 0.05)")
    p.add_argument("--target-modules", default="q_proj,v_proj", help="comma list of modules, or 'all-linear' (default: q_proj,v_proj)")
    p.add_argument("--lr", dest="learning_rate", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training split (default: 3)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per micro-batch (default: 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--max-length", type=int, default=192, help="max tokens per row, prompt + answer (default: 192)")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share of rows held out for eval loss (default: 0.1)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: 0)")
    p.add_argument("--warmup-ratio", type=float, default=0.05, help="share of steps for linear warm-up (default: 0.05)")
    p.add_argument("--group-by-length", action="store_true",
                   help="batch rows of similar length to spend less compute on padding (off by default, as v1-v3)")
    p.add_argument("--save-dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the saved adapter weights; float16 halves the file (default: float32)")
    p.add_argument("--seed", type=int, default=0, help="seed for split, shuffling and init (default: 0)")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between resumable checkpoints; 0 disables (default: 25)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/last if present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, train

    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["target_modules"] = [m.strip() for m in args.target_modules.split(",") if m.strip()]
    try:
        config = TrainConfig(**values)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = train(config, resume=args.resume, progress=not args.no_progress)
    print(f"saved {config.output}: train loss {meta['first_train_loss']} -> {meta['final_train_loss']}, "
          f"eval loss {meta['initial_eval_loss']} -> {meta['final_eval_loss']}, {meta['train_seconds']} s, "
          f"{meta['tokens_per_second_real']} real tok/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description="QLoRA fine-tuning (see domain-eval train --help)")
    _add_arguments(parser)
    return run(parser.parse_args(argv))
