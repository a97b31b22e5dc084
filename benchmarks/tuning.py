"""Tuning sweeps for batched generation, each printed as a table with ratios against a reference.

Sweeps (``--sweeps``, default all, in this order):
- batch:   batch size 1, 4, 8, 16, 32 sorted by prompt length; unsorted where sorting can matter
           (1 < batch < cases), with the share of left-padding tokens. Reference: batch 1.
- cache:   the KV cache on/off (``use_cache`` passed to ``model.generate``). Reference: on.
- threads: torch threads 1 vs one per core, at batch 1 and batched. Reference: one per core.
- quant:   4-bit NF4 vs fp32 (``quant="none"``), at batch 1 and batched. Reference: 4-bit.
- tokens:  max_new_tokens 32, 48, 64, 96: cases that hit the limit and domains kept. Reference: 64.
- padding: batched vs batch-1 outputs, 4-bit and fp32; each case that differs is rerun in a batch of
           copies of itself (same batch shape, no padding), which tells padding effects apart from
           batch-shape numerics of the kernels.
- kernel:  bitsandbytes 4-bit compute dtype (bf16, the library's, vs fp32) x its CPU gemv fast path
           (on, the default, vs off): speed at batch 1 and 16, and batched = batch-1 domains.

"same domains as ref" counts cases whose domains equal the reference run's (greedy decoding).
Settings measured earlier with the same inputs are reused, not rerun.
Run: ``python -m benchmarks.tuning [--quick] [--sweeps batch,cache] [--adapter v1] [--json out.json]``
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

from benchmarks.common import (
    adapter_paths,
    allowed_cases,
    available_adapters,
    cores,
    describe_machine,
    left_padding,
    machine,
    prompt_lengths,
    ratio,
    setup_env,
    table,
    write_json,
)

SWEEPS = ("batch", "cache", "threads", "quant", "tokens", "padding", "kernel")
HEADERS = ["setting", "s", "cases/s", "tok/s", "speed vs ref", "same domains as ref"]


@dataclass
class Run:
    """One timed ``generate`` over a case list (best of the repeats)."""

    label: str
    seconds: float
    outputs: list[Any]  # domain_eval.generation.Generation
    extra: list[Any] = field(default_factory=list)  # sweep-specific columns

    @property
    def cases_per_s(self) -> float:
        return len(self.outputs) / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return sum(g.new_tokens for g in self.outputs) / self.seconds

    @property
    def domains(self) -> list[list[str]]:
        return [[d for d, _ in g.domains] for g in self.outputs]


def same(a: Run, b: Run) -> str:
    return f"{sum(x == y for x, y in zip(a.domains, b.domains))}/{len(a.outputs)}"


@contextlib.contextmanager
def generate_kwargs(gen: Any, **extra: Any) -> Iterator[None]:
    """Pass extra keyword arguments (e.g. ``use_cache=False``) to every ``model.generate`` call."""
    gen.model.generate = functools.partial(type(gen.model).generate, gen.model, **extra)
    try:
        yield
    finally:
        del gen.model.generate


def load_4bit(compute_dtype: Any) -> Any:
    """The library's 4-bit NF4 base, but with this compute dtype (the library uses bf16)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from transformers.utils import logging as hf_logging

    from domain_eval.models import DEFAULT_BASE, LoadedBase, resolve_base

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    base = resolve_base(DEFAULT_BASE)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute_dtype)
    tokenizer = AutoTokenizer.from_pretrained(base.source, local_files_only=True)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base.source, local_files_only=True, dtype=torch.float32,
                                                 quantization_config=config, device_map={"": "cpu"}).eval()
    return LoadedBase(model, tokenizer, base, "4bit", "cpu", time.perf_counter() - start)


class Tuner:
    def __init__(self, gen: Any, descriptions: list[str], repeat: int, quick: bool) -> None:
        self.gen, self.descriptions, self.repeat, self.quick = gen, descriptions, repeat, quick
        self.lengths = prompt_lengths(gen.tokenizer, descriptions)
        self.fp32: Any = None
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._memo: dict[tuple[Any, ...], Run] = {}

    def run(self, label: str, descriptions: Sequence[str] | None = None, gen: Any = None, *, batch_size: int = 16,
            sort: bool = True, max_new_tokens: int = 64, memo: bool = True) -> Run:
        """Time ``gen.generate`` with these settings; identical settings measured before are reused."""
        gen = gen or self.gen
        descriptions = list(descriptions or self.descriptions)
        import torch

        key = (id(gen), torch.get_num_threads(), batch_size, sort, max_new_tokens, tuple(descriptions))
        if memo and key in self._memo:
            return replace(self._memo[key], label=label, extra=[])
        gen.config.batch_size, gen.config.sort_by_length, gen.config.max_new_tokens = batch_size, sort, max_new_tokens
        best, outputs = float("inf"), []
        for _ in range(self.repeat):
            start = time.perf_counter()
            outputs = gen.generate(descriptions)
            best = min(best, time.perf_counter() - start)
        print(f"    {label}: {best:.1f} s", flush=True)
        result = Run(label, best, outputs)
        if memo:
            self._memo[key] = result
        return result

    def fp32_generator(self) -> Any:
        from domain_eval.generation import DomainNameGenerator

        if self.fp32 is None:
            self.fp32 = DomainNameGenerator(adapter=adapter_paths(self.gen.adapters), quant="none", safety=None)
            self.fp32.generate(self.descriptions[:1])
        return self.fp32

    def show(self, name: str, title: str, groups: list[list[Run]], extra_headers: Sequence[str] = ()) -> None:
        """Print one table; each group's first run is the reference of that group."""
        headers = [*HEADERS, *extra_headers]
        body = [[r.label, r.seconds, r.cases_per_s, r.tokens_per_s, ratio(r.cases_per_s, g[0].cases_per_s),
                 same(r, g[0]), *r.extra] for g in groups for r in g]
        refs = "; ".join(g[0].label for g in groups)
        print(f"\n## {title} (reference: {refs})\n{table(headers, body)}\n", flush=True)
        self.results[name] = [dict(zip(headers, row)) for row in body]

    # ---------------------------------------------------------------------------------- sweeps
    def batch(self) -> None:
        n, runs = len(self.descriptions), []
        for bs in (1, 4, 8, 16, 32):
            for sort in (True, False) if 1 < bs < n else (True,):
                run = self.run(f"batch {bs}, {'sorted' if sort else 'unsorted'}", batch_size=bs, sort=sort)
                pads = sum(left_padding(self.lengths, bs, sort))
                run.extra = [f"{100 * pads / (pads + sum(self.lengths)):.0f}%"]
                runs.append(run)
        self.show("batch", f"batch size and length sorting, {n} cases", [runs], ["padding tokens"])

    def cache(self) -> None:
        k, tokens = min(4 if self.quick else 16, len(self.descriptions)), 32 if self.quick else 64
        subset = self.descriptions[:k]
        on = self.run(f"use_cache=True, batch {k}", subset, batch_size=k, max_new_tokens=tokens)
        with generate_kwargs(self.gen, use_cache=False):
            off = self.run(f"use_cache=False, batch {k}", subset, batch_size=k, max_new_tokens=tokens, memo=False)
        self.show("cache", f"KV cache, {k} cases, max_new_tokens {tokens}", [[on, off]])

    def threads(self) -> None:
        import torch

        n, before = len(self.descriptions), torch.get_num_threads()
        k = min(4 if self.quick else 16, n)
        by_threads = {}
        for threads in (cores(), 1):
            torch.set_num_threads(threads)
            by_threads[threads] = (
                self.run(f"{threads} thread(s), batch 1, {k} cases", self.descriptions[:k], batch_size=1),
                self.run(f"{threads} thread(s), batch 16, {n} cases", batch_size=16),
            )
        torch.set_num_threads(before)
        many, one = by_threads[cores()], by_threads[1]
        self.show("threads", f"torch threads on {cores()} cores", [[many[0], one[0]], [many[1], one[1]]])

    def quant(self) -> None:
        from benchmarks.bandwidth import weight_bytes

        n = len(self.descriptions)
        k = min(4 if self.quick else 16, n)
        groups: list[list[Run]] = [[], []]
        for gen in (self.gen, self.fp32_generator()):
            name = "4bit" if gen.loaded.quant == "4bit" else "fp32"
            extra = [gen.loaded.load_seconds, weight_bytes(gen.model, gen.active) / 1e6]
            for group, (bs, subset) in zip(groups, ((1, self.descriptions[:k]), (16, self.descriptions))):
                run = self.run(f"{name}, batch {bs}, {len(subset)} cases", subset, gen, batch_size=bs)
                run.extra = extra
                group.append(run)
        self.show("quant", "4-bit vs fp32 (the adapters were trained in 4-bit: fp32 domains are expected to differ)",
                  groups, ["load s", "weights MB"])

    def tokens(self) -> None:
        runs = {m: self.run(f"max_new_tokens {m}", max_new_tokens=m) for m in (32, 48, 64, 96)}
        for limit, run in runs.items():
            hit = sum(g.new_tokens >= limit for g in run.outputs)
            fewer = sum(len(a) < len(b) for a, b in zip(run.domains, runs[96].domains))
            run.extra = [hit, sum(map(len, run.domains)) / len(run.outputs), fewer, same(run, runs[96])]
        self.show("tokens", f"max_new_tokens, batch 16, {len(self.descriptions)} cases",
                  [[runs[64], runs[32], runs[48], runs[96]]],
                  ["hit limit", "domains/case", "fewer domains than 96", "same as 96"])

    def padding(self) -> None:
        n, k = len(self.descriptions), min(16, len(self.descriptions))
        pads = left_padding(self.lengths, 16)
        headers = ["quant", "cases", "batched = batch 1", "differ", "copies = batch 1 (padding or batch mates)",
                   "copies differ too (batch-shape numerics)"]
        body, details = [], []
        for name, gen in (("4bit", self.gen), ("fp32", self.fp32_generator())):
            one = self.run(f"{name}, batch 1", None, gen, batch_size=1)
            batched = self.run(f"{name}, batch 16, sorted", None, gen, batch_size=16)
            differ = [i for i, (a, b) in enumerate(zip(one.domains, batched.domains)) if a != b]
            padding_caused = 0
            for i in differ:
                copies = self.run(f"{name}, case {i} x {k} copies", [self.descriptions[i]] * k, gen, batch_size=k)
                is_padding = copies.domains[0] == one.domains[i]
                padding_caused += is_padding
                details.append(f"  {name} case {i} ({self.lengths[i]} prompt tokens, left pad {pads[i]}): batch 1 {one.domains[i]}"
                               f" | batched {batched.domains[i]} | {k} copies {copies.domains[0]}"
                               f" -> {'padding or batch mates' if is_padding else 'batch-shape numerics'}")
            body.append([name, n, n - len(differ), len(differ), padding_caused, len(differ) - padding_caused])
        print(f"\n## batched (16, sorted) vs batch-1 outputs: is it padding?\n{table(headers, body)}")
        print("\n".join(details) + "\n")
        self.results["padding"] = [dict(zip(headers, row)) for row in body] + [{"detail": d} for d in details]

    def kernel(self) -> None:
        """bitsandbytes 4-bit on CPU: compute dtype and the AVX512-BF16 gemv fast path, for speed and
        for batch invariance (batched domains = batch-1 domains)."""
        import torch

        from domain_eval.generation import DomainNameGenerator
        from domain_eval.models import disable_cpu_gemv_repack

        n = len(self.descriptions)
        groups: list[list[Run]] = [[], []]
        for dtype in (torch.bfloat16, torch.float32):
            for gemv in (True, False):
                name = f"{str(dtype).split('.')[-1]} compute, gemv {'on' if gemv else 'off'}"
                if dtype == torch.bfloat16 and gemv:
                    gen = self.gen  # the library's default
                else:
                    gen = DomainNameGenerator(loaded=load_4bit(dtype), adapter=adapter_paths(self.gen.adapters), safety=None)
                if not gemv:
                    disable_cpu_gemv_repack(gen.model)  # before the first forward, which would repack
                memo = gen is self.gen  # the others are dropped after this loop: their id() may be reused
                one_all = self.run(f"{name}, batch 1, {n} cases", None, gen, batch_size=1, memo=memo)
                batched = self.run(f"{name}, batch 16, {n} cases", None, gen, batch_size=16, memo=memo)
                one_all.extra = batched.extra = [same(batched, one_all)]
                groups[0].append(one_all)
                groups[1].append(batched)
        self.show("kernel", "4-bit compute dtype and the CPU gemv fast path", groups,
                  ["batched = batch 1"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="16 cases, smaller subsets for the slow settings")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma list of {', '.join(SWEEPS)} (default: all)")
    parser.add_argument("--adapter", default=None, help="adapter to tune with (default: the newest trained)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (default: 16 quick, 64 full)")
    parser.add_argument("--repeat", type=int, default=1, help="time each setting this many times, keep the best")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--json", default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    sweeps = [s.strip() for s in args.sweeps.split(",") if s.strip()]
    if unknown := set(sweeps) - set(SWEEPS):
        parser.error(f"unknown sweep(s) {sorted(unknown)}; choose from {', '.join(SWEEPS)}")
    setup_env()
    from domain_eval.generation import DomainNameGenerator
    from domain_eval.models import configure_threads

    info = machine()
    adapter = args.adapter or (available_adapters() or [None])[-1]
    descriptions = [c["description"] for c in allowed_cases(args.cases or (16 if args.quick else 64))]
    threads = configure_threads(1)
    if args.threads:
        import torch

        torch.set_num_threads(threads := args.threads)
    gen = DomainNameGenerator(adapter=adapter_paths([adapter]) if adapter else None, safety=None)
    print(f"tuning: adapter {adapter or 'none'}, {len(descriptions)} cases, 4-bit unless stated, greedy, {threads} threads")
    print(describe_machine(info), flush=True)
    gen.generate(descriptions[:1])  # warm-up: the first 4-bit forward repacks the weights
    tuner = Tuner(gen, descriptions, args.repeat, args.quick)
    for sweep in sweeps:
        print(f"\n# {sweep}", flush=True)
        getattr(tuner, sweep)()
    write_json(args.json, {"machine": info, "adapter": adapter, "cases": len(descriptions), "sweeps": tuner.results})


if __name__ == "__main__":
    main()
