"""Tuning sweeps for batched generation, each printed as a table with ratios against a reference.

Sweeps (``--sweeps``, default all, in this order):
- batch:   most rows per batch 1, 8, 16, 32, 64 (sorted by prompt length, no token budget), then the
           library default (64 rows, at most 4096 prompt tokens incl. padding) and 64 unsorted, with
           the share of padding tokens. Reference: batch 1.
- decode:  what the decoding loop adds, at the default batching: the shared prefix run once, rows
           stopped once they hold n domains, and ``model.generate`` on the same batches (every row
           steps until the slowest ends; the whole prompt per row); with the KV cache off too.
- threads: torch threads 1 vs one per core, at batch 1 and batched. Reference: one per core.
- kernel:  how the 4-bit layers are multiplied on CPU: NF4 dequantised once to fp32 (the library's),
           bitsandbytes with bf16 compute and its gemv fast path (the original's), without the fast
           path, with fp32 compute; and the fp32 weights without quantisation. Speed at batch 1 and
           batched, and whether batched domains equal batch-1 domains.
- tokens:  max_new_tokens 32, 48, 64, 96: cases that hit the limit and domains kept. Reference: 64.

"same domains as ref" counts cases whose domains equal the reference run's (greedy decoding).
Settings measured earlier with the same inputs are reused, not rerun.
Run: ``python -m benchmarks.tuning [--quick] [--sweeps batch,decode] [--adapter v1] [--json out.json]``
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from benchmarks.common import (
    adapter_paths,
    allowed_cases,
    available_adapters,
    cores,
    describe_machine,
    machine,
    new_text,
    prompt_lengths,
    ratio,
    setup_env,
    table,
    write_json,
)

SWEEPS = ("batch", "decode", "threads", "kernel", "tokens")
DEFAULT_BATCH, DEFAULT_BUDGET = 64, 4096  # GenerationConfig's batch_size and max_batch_tokens
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


def padding_share(lengths: Sequence[int], batch_size: int, budget: int, sort: bool) -> float:
    """Share of prompt tokens in a batch that are padding, for DomainNameGenerator's batch plan."""
    from domain_eval.generation import plan_batches

    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if sort else list(range(len(lengths)))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in plan_batches(order, lengths, batch_size, budget))
    return 1 - sum(lengths) / padded


def hf_generate(gen: Any, descriptions: Sequence[str], use_cache: bool = True) -> list[Any]:
    """``model.generate`` on DomainNameGenerator's batches (left padding), as the library did before."""
    import torch

    from domain_eval.generation import Generation, plan_batches, rank_domains
    from domain_eval.prompts import build_prompt

    tok = gen.tokenizer
    prompts = [build_prompt(tok, d) for d in descriptions]
    lengths = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[Any] = [None] * len(prompts)
    for batch in plan_batches(order, lengths, gen.config.batch_size, gen.config.max_batch_tokens):
        enc = tok([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=gen.config.max_new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tok.pad_token_id, use_cache=use_cache)
        for i, row in zip(batch, out[:, enc["input_ids"].shape[1]:].tolist()):
            text, count = new_text(tok, row)
            results[i] = Generation(descriptions[i], text, rank_domains(text, descriptions[i], gen.config.n)[0], new_tokens=count)
    return results


def load_4bit(compute_dtype: Any) -> Any:
    """The 4-bit NF4 base on bitsandbytes' own CPU kernels with this compute dtype (QLoRA config: bf16)."""
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
    return LoadedBase(model, tokenizer, base, "4bit", "cpu", time.perf_counter() - start, kernel="bnb-4bit")


class Tuner:
    def __init__(self, gen: Any, descriptions: list[str], repeat: int, quick: bool) -> None:
        self.gen, self.descriptions, self.repeat, self.quick = gen, descriptions, repeat, quick
        self.lengths = prompt_lengths(gen.tokenizer, descriptions)
        self.fp32: Any = None
        self.results: dict[str, list[dict[str, Any]]] = {}
        self._memo: dict[tuple[Any, ...], Run] = {}

    def run(self, label: str, descriptions: Sequence[str] | None = None, gen: Any = None, *,
            batch_size: int = DEFAULT_BATCH, budget: int = DEFAULT_BUDGET, sort: bool = True, max_new_tokens: int = 64,
            share_prefix: bool = True, stop_when_complete: bool = True, hf: str | None = None, memo: bool = True) -> Run:
        """Time ``gen.generate`` (or ``model.generate`` with ``hf="cache"|"no-cache"``) with these
        settings; identical settings measured before are reused."""
        gen = gen or self.gen
        descriptions = list(descriptions or self.descriptions)
        import torch

        key = (id(gen), torch.get_num_threads(), batch_size, budget, sort, max_new_tokens, share_prefix,
               stop_when_complete, hf, tuple(descriptions))
        if memo and key in self._memo:
            return replace(self._memo[key], label=label, extra=[])
        c = gen.config
        c.batch_size, c.max_batch_tokens, c.sort_by_length, c.max_new_tokens = batch_size, budget, sort, max_new_tokens
        c.share_prefix, c.stop_when_complete = share_prefix, stop_when_complete
        best, outputs = float("inf"), []
        for _ in range(self.repeat):
            start = time.perf_counter()
            outputs = hf_generate(gen, descriptions, hf == "cache") if hf else gen.generate(descriptions)
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
        n, runs, big = len(self.descriptions), [], 10**9
        for bs in (1, 8, 16, 32, 64):
            run = self.run(f"batch {bs}, sorted, no token budget", batch_size=bs, budget=big)
            run.extra = [f"{100 * padding_share(self.lengths, bs, big, True):.0f}%"]
            runs.append(run)
        for sort in (True, False):
            run = self.run(f"batch {DEFAULT_BATCH}, budget {DEFAULT_BUDGET} tokens, {'sorted' if sort else 'unsorted'}"
                           + (" (default)" if sort else ""), sort=sort)
            run.extra = [f"{100 * padding_share(self.lengths, DEFAULT_BATCH, DEFAULT_BUDGET, sort):.0f}%"]
            runs.append(run)
        self.show("batch", f"batch size, token budget and length sorting, {n} cases", [runs], ["padding tokens"])

    def decode(self) -> None:
        n = len(self.descriptions)
        default = self.run("decode loop (default)")
        runs = [
            default,
            self.run("without the shared-prefix pass", share_prefix=False),
            self.run("without stopping at n domains", stop_when_complete=False),
            self.run("model.generate, same batches", hf="cache"),
        ]
        k = min(4 if self.quick else 8, n)
        subset = self.descriptions[:k]
        cached = self.run(f"model.generate, {k} cases, KV cache on", subset, hf="cache")
        uncached = self.run(f"model.generate, {k} cases, KV cache off", subset, hf="no-cache")
        self.show("decode", f"the decoding loop vs model.generate, {n} cases", [runs, [cached, uncached]])

    def threads(self) -> None:
        import torch

        n, before = len(self.descriptions), torch.get_num_threads()
        k = min(4 if self.quick else 16, n)
        by_threads = {}
        for threads in (cores(), 1):
            torch.set_num_threads(threads)
            by_threads[threads] = (
                self.run(f"{threads} thread(s), batch 1, {k} cases", self.descriptions[:k], batch_size=1),
                self.run(f"{threads} thread(s), default batching, {n} cases"),
            )
        torch.set_num_threads(before)
        many, one = by_threads[cores()], by_threads[1]
        self.show("threads", f"torch threads on {cores()} cores", [[many[0], one[0]], [many[1], one[1]]])

    def kernel(self) -> None:
        """How 4-bit layers are multiplied on CPU, for speed and batch invariance (batched = batch 1)."""
        import torch

        from benchmarks.bandwidth import weight_bytes
        from domain_eval.generation import DomainNameGenerator
        from domain_eval.models import disable_cpu_gemv_repack

        n = len(self.descriptions)
        k = min(8 if self.quick else 16, n)
        variants: list[tuple[str, Any]] = [
            ("NF4 dequantised once, fp32 (library)", None),
            ("bitsandbytes bf16, gemv on (original)", (torch.bfloat16, True)),
            ("bitsandbytes bf16, gemv off", (torch.bfloat16, False)),
            ("bitsandbytes fp32, gemv off", (torch.float32, False)),
            ("fp32 weights, no quantisation", "none"),
        ]
        groups: list[list[Run]] = [[], []]
        for name, variant in variants:
            if variant is None:
                gen = self.gen
            elif variant == "none":
                gen = self.fp32_generator()
            else:
                dtype, gemv = variant
                gen = DomainNameGenerator(loaded=load_4bit(dtype), adapter=adapter_paths(self.gen.adapters), safety=None)
                if not gemv:
                    disable_cpu_gemv_repack(gen.model)  # before the first forward, which would repack
            memo = gen is self.gen  # the others are dropped after this loop: their id() may be reused
            one = self.run(f"{name}, batch 1, {k} cases", self.descriptions[:k], gen, batch_size=1, memo=memo)
            batched = self.run(f"{name}, batched, {k} cases", self.descriptions[:k], gen, memo=memo)
            one.extra = batched.extra = [same(batched, one), gen.loaded.load_seconds, weight_bytes(gen.model, gen.active) / 1e6]
            groups[0].append(one)
            groups[1].append(batched)
        self.show("kernel", "4-bit kernels on CPU (fp32 weights: not the weights the adapters were trained on)",
                  groups, ["batched = batch 1", "load s", "weights MB"])

    def tokens(self) -> None:
        runs = {m: self.run(f"max_new_tokens {m}", max_new_tokens=m) for m in (32, 48, 64, 96)}
        for limit, run in runs.items():
            hit = sum(g.new_tokens >= limit for g in run.outputs)
            fewer = sum(len(a) < len(b) for a, b in zip(run.domains, runs[96].domains))
            run.extra = [hit, sum(map(len, run.domains)) / len(run.outputs), fewer, same(run, runs[96])]
        self.show("tokens", f"max_new_tokens, default batching, {len(self.descriptions)} cases",
                  [[runs[64], runs[32], runs[48], runs[96]]],
                  ["hit limit", "domains/case", "fewer domains than 96", "same as 96"])


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
    print(f"tuning: adapter {adapter or 'none'}, {len(descriptions)} cases, 4-bit NF4 ({gen.loaded.kernel}) unless stated, "
          f"greedy, {threads} threads")
    print(describe_machine(info), flush=True)
    gen.generate(descriptions[:1])  # warm-up
    tuner = Tuner(gen, descriptions, args.repeat, args.quick)
    for sweep in sweeps:
        print(f"\n# {sweep}", flush=True)
        getattr(tuner, sweep)()
    write_json(args.json, {"machine": info, "adapter": adapter, "cases": len(descriptions), "sweeps": tuner.results})


if __name__ == "__main__":
    main()
