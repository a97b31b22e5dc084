"""How close is generation to this machine's memory-bandwidth limit?

At batch 1, every generated token reads every weight once, so decode speed cannot exceed
``copy bandwidth / bytes of weights``. This measures both sides:

- a STREAM-like copy rate: numpy copies a large array (best of several; bytes moved = 2 x size:
  one read and one write), with 1 thread and with one thread per core;
- the bytes read per token: the loaded model's parameter + buffer storage (plus bitsandbytes'
  quantisation state), each storage counted once. SmolLM2 ties its embeddings: the lm_head
  reads the whole embedding matrix every token, so it counts in full, and once;
- decode tokens/s at batch 1 and batched, prefill excluded: time a forced-length generation of
  N tokens minus one of 1 token.

Kernels (``--kernels``): ``dequantized`` (4-bit NF4 dequantised once to fp32, the library's CPU
default: 4 bytes per weight read), ``bnb`` (bitsandbytes' own 4-bit kernels: half a byte per weight
plus quantisation state) and ``none`` (the unquantised fp32 weights).

Run: ``python -m benchmarks.bandwidth [--quick] [--kernels dequantized,bnb,none] [--adapter v1] [--json out.json]``
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from domain_eval.models import CPU_KERNELS

from benchmarks.common import (
    adapter_paths,
    allowed_cases,
    available_adapters,
    cores,
    describe_machine,
    machine,
    setup_env,
    table,
    write_json,
)

MB = 1e6


def copy_bandwidth(size_mb: int = 512, repeats: int = 5, threads: int = 1) -> float:
    """Best-of-``repeats`` copy rate in bytes/s of a ``size_mb`` float64 array, split over ``threads``."""
    import numpy as np

    src = np.ones(size_mb * 2**20 // 8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1, dtype=int)
    parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:  # numpy releases the GIL while copying
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda s: np.copyto(dst[s], src[s]), parts))
            best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


def machine_bandwidth(size_mb: int = 512, repeats: int = 5) -> dict[int, float]:
    """Copy rate (bytes/s) with 1 thread and with one thread per core."""
    return {n: copy_bandwidth(size_mb, repeats, n) for n in sorted({1, cores()})}


def weight_bytes(model: Any, active_adapter: str | None = None) -> int:
    """Bytes of weights one decode step reads: parameters, buffers and 4-bit quantisation
    state, each storage counted once (tied embeddings: the lm_head *is* the embedding matrix).
    LoRA weights count only for ``active_adapter``; other loaded adapters are not read."""
    import torch

    seen: dict[tuple[int, int], int] = {}

    def add(t: torch.Tensor) -> None:
        seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()

    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if ".lora_" in name and f".{active_adapter}." not in name:
            continue
        add(t)
        state = getattr(t, "quant_state", None)
        if state is not None:
            for value in state.as_dict(packed=False).values():
                if torch.is_tensor(value):
                    add(value)
    return sum(seen.values())


def decode_rate(model: Any, tokenizer: Any, prompts: Sequence[str], new_tokens: int = 32, repeats: int = 2) -> float:
    """Generated tokens/s of the decode phase for ``prompts`` as one batch (prefill excluded)."""
    import torch

    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)

    def timed(n: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.inference_mode():
                model.generate(**enc, **kwargs, max_new_tokens=n, min_new_tokens=n)
            best = min(best, time.perf_counter() - start)
        return best

    timed(2)  # warm-up: bitsandbytes repacks 4-bit weights on the first forward
    return len(prompts) * (new_tokens - 1) / max(1e-9, timed(new_tokens) - timed(1))


@dataclass
class BandwidthRow:
    kernel: str
    weight_bytes: int
    copy_bytes_per_s: float
    batch1_tps: float | None = None
    batched_tps: float | None = None
    batch: int = 0

    @property
    def bound_tps(self) -> float:
        """Batch-1 decode tokens/s if every token only had to stream the weights once."""
        return self.copy_bytes_per_s / self.weight_bytes

    def cells(self) -> list[Any]:
        b1, bb = self.batch1_tps, self.batched_tps
        return [
            self.kernel,
            self.weight_bytes / MB,
            self.bound_tps,
            b1,
            f"{100 * b1 / self.bound_tps:.0f}%" if b1 else "-",
            bb,
            f"{bb / self.bound_tps:.2f}x" if bb else "-",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bound_tps": self.bound_tps}


HEADERS = ["kernel", "weights MB/token", "bound tok/s", "batch-1 tok/s", "of bound", "batched tok/s", "vs bound"]


def summary(rows: Sequence[BandwidthRow], bandwidth: dict[int, float], note: str = "") -> str:
    """The printed block: copy rates, then one line per precision."""
    rates = ", ".join(f"{bw / 1e9:.1f} GB/s ({n} thread{'s' if n > 1 else ''})" for n, bw in bandwidth.items())
    lines = [
        f"memory bandwidth (numpy copy, bytes moved = 2 x size): {rates}; the bound uses the best",
        table(HEADERS, [r.cells() for r in rows]),
        "bound = copy rate / bytes of weights read per token (batch 1). A batch reads the weights once per",
        "step for all its rows, so batched tok/s can exceed the batch-1 bound.",
    ]
    if note:
        lines.append(note)
    return "\n".join(lines)


KERNELS = (*CPU_KERNELS, "none")  # "none": the unquantised fp32 weights


def measure(kernels: Sequence[str], adapter: str | None, n_batched: int, new_tokens: int, size_mb: int) -> tuple[list[BandwidthRow], dict[int, float]]:
    from domain_eval.generation import DomainNameGenerator
    from domain_eval.models import configure_threads, load_base
    from domain_eval.prompts import build_prompt

    bandwidth = machine_bandwidth(size_mb)
    best = max(bandwidth.values())
    descriptions = [c["description"] for c in allowed_cases(n_batched)]
    rows = []
    for kernel in kernels:
        configure_threads(1)
        loaded = load_base(quant="none" if kernel == "none" else "4bit", cpu_kernel="bnb" if kernel == "bnb" else "dequantized")
        gen = DomainNameGenerator(adapter=adapter_paths([adapter]) if adapter else None, safety=None, loaded=loaded)
        prompts = [build_prompt(gen.tokenizer, d) for d in descriptions]
        batch1 = decode_rate(gen.model, gen.tokenizer, prompts[:1], new_tokens)
        batched = decode_rate(gen.model, gen.tokenizer, prompts, new_tokens)
        # After the first forward: bitsandbytes' CPU repack changes the 4-bit storage slightly.
        row = BandwidthRow(gen.loaded.kernel, weight_bytes(gen.model, adapter), best, batch1, batched, len(prompts))
        rows.append(row)
        print(f"  {gen.loaded.kernel}: batch-1 {row.batch1_tps:.1f} tok/s, batch-{len(prompts)} {row.batched_tps:.1f} tok/s", flush=True)
        del gen
    return rows, bandwidth


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bandwidth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts and tokens (a smaller batch)")
    parser.add_argument("--kernels", default="dequantized,bnb", help=f"comma list of {', '.join(KERNELS)} (default: dequantized,bnb)")
    parser.add_argument("--adapter", default=None, help="adapter to attach (default: the newest trained; 'base' for none)")
    parser.add_argument("--new-tokens", type=int, default=None, help="forced decode length (default 32, quick 16)")
    parser.add_argument("--size-mb", type=int, default=512, help="array size for the copy test")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    setup_env()
    adapter = args.adapter or (available_adapters() or ["base"])[-1]
    adapter = None if adapter == "base" else adapter
    n_batched, new_tokens = (8, 16) if args.quick else (16, args.new_tokens or 32)
    new_tokens = args.new_tokens or new_tokens
    info = machine()
    print(describe_machine(info))
    print(f"decode rates with adapter {adapter or 'none'}, {new_tokens} forced new tokens, batch 1 and {n_batched}")
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if unknown := set(kernels) - set(KERNELS):
        parser.error(f"unknown kernel(s) {sorted(unknown)}; choose from {', '.join(KERNELS)}")
    rows, bandwidth = measure(kernels, adapter, n_batched, new_tokens, args.size_mb)
    print()
    print(summary(rows, bandwidth))
    write_json(args.json, {"machine": info, "copy_bytes_per_s": bandwidth, "rows": [r.to_dict() for r in rows]})


if __name__ == "__main__":
    main()
