"""The per-process evaluation run: the model loaded once, adapters attached one by one, cached
batched generation, and the hand-off to :func:`domain_eval.scoring.score_case`.

``EvalRun`` only orchestrates: what a result means lives in :mod:`domain_eval.scoring`, what the
options are in :mod:`domain_eval.config`. A model that fails to load is tried once; its cases
then error with one short message while the other models run.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from domain_eval.cases import Case
from domain_eval.config import BASE, EvalOptions, model_label
from domain_eval.scoring import CaseResult, SafetyCheck, score_case


class CaseFailure(AssertionError):
    """A case that did not meet its expectations: a finding, reported without a traceback."""


class CaseErrored(RuntimeError):
    """A case that could not be scored (judge error, description too long): never a score."""


class ModelUnavailable(RuntimeError):
    """The model of an item could not be loaded; raised in setup, so pytest reports an error."""


@dataclass
class GenerationBatchStats:
    model: str
    cases: int
    seconds: float
    new_tokens: int


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


class EvalRun:
    """Per-process state: one base model with all adapters, one judge, one safety filter."""

    def __init__(self, options: EvalOptions, judge: Any, progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.judge = judge
        self._progress = progress or (lambda msg: None)
        self._generator: Any = None
        self._base_error: str | None = None
        self._adapter_errors: dict[str, str] = {}
        self._safety: Any = None
        self._verdicts: dict[str, Any] = {}
        self.generations: dict[tuple[str, str], list[Any]] = {}
        self.case_errors: dict[tuple[str, str], str] = {}
        self.batch_stats: list[GenerationBatchStats] = []
        self.load_seconds: float | None = None
        self.adapter_hashes: dict[str, str] = {}

    @property
    def safety(self) -> Any:
        if self._safety is None:
            from domain_eval.config import make_safety_filter

            self._safety = make_safety_filter(self.options)
        return self._safety

    def verdict(self, description: str) -> Any:
        """The safety filter's verdict, once per description (the batch filter and each item ask)."""
        if description not in self._verdicts:
            self._verdicts[description] = self.safety.check(description)
        return self._verdicts[description]

    # ------------------------------------------------------------------ models, loaded once
    def _load(self) -> Any:
        if self._generator is not None or self._base_error is not None:
            return self._generator
        from domain_eval.generation import DomainNameGenerator, GenerationConfig
        from domain_eval.models import adapter_hash, configure_threads

        configure_threads()
        start = time.perf_counter()
        adapters = {model_label(m): m for m in self.options.models if m != BASE}
        self._progress(f"loading {self.options.base} ({self.options.quant}) with adapters: {', '.join(adapters) or 'none'}")
        try:
            gen = DomainNameGenerator(
                base_model=self.options.base, adapter=None, quant=self.options.quant, cpu_kernel=self.options.cpu_kernel,
                models_dir=self.options.models_dir, safety=self.safety,
                config=GenerationConfig(n=self.options.n, batch_size=self.options.batch_size,
                                        max_new_tokens=self.options.max_new_tokens),
            )
        except Exception as exc:  # noqa: BLE001 - reported once, for every item of every model
            self._base_error = f"base model {self.options.base!r} could not be loaded: {_short(exc)}"
            self._progress(self._base_error)
            return None
        for label, spec in adapters.items():
            try:
                gen.add_adapter(label, spec, self.options.models_dir)
                self.adapter_hashes[label] = adapter_hash(gen.adapter_paths[label])
            except Exception as exc:  # noqa: BLE001 - this model's items error; the others run
                self._adapter_errors[label] = f"adapter {label!r} could not be loaded: {_short(exc)}"
                self._progress(self._adapter_errors[label])
        self.load_seconds = time.perf_counter() - start
        self._generator = gen
        return gen

    def model_error(self, model: str) -> str | None:
        """Why ``model`` cannot run in this process (loading it at most once), or None."""
        self._load()
        return self._base_error or self._adapter_errors.get(model)

    @property
    def prompt_token_limit(self) -> int:
        if self.options.max_prompt_tokens is not None:
            return self.options.max_prompt_tokens
        context = getattr(self._generator.model.config, "max_position_embeddings", None) or 2048
        return int(context) - self.options.max_new_tokens

    # ------------------------------------------------------------------ generation
    def ensure_generated(self, model: str, cases: list[Case]) -> None:
        """Generate, in batches, for every case of ``cases`` not generated yet for ``model``."""
        todo = [c for c in cases if c.expect == "allowed" and (model, c.id) not in self.generations
                and (model, c.id) not in self.case_errors and not self.verdict(c.description).blocked]
        if not todo or self.model_error(model):
            return
        gen = self._generator
        limit = self.prompt_token_limit
        lengths = gen.prompt_lengths([c.description for c in todo])
        fits = []
        for case, length in zip(todo, lengths):
            if length > limit:
                self.case_errors[(model, case.id)] = (
                    f"description too long: its prompt is {length:,} tokens, over the limit of {limit:,} "
                    f"(the model's context minus {self.options.max_new_tokens} tokens for the answer; "
                    "ini domain_eval_max_prompt_tokens sets it)")
            else:
                fits.append(case)
        if not fits:
            return
        gen.use(model)
        start = time.perf_counter()
        per_case: dict[str, list[Any]] = {c.id: [] for c in fits}

        def on_batch(done: int, total: int) -> None:
            if done < total:  # a long silence otherwise: all of a model's cases come out at once
                self._progress(f"  {model}: {done}/{total} generated ({time.perf_counter() - start:.0f} s)")

        for seed in self.options.seeds:
            self._progress(f"generating {model}: {len(fits)} case(s)" + (f", seed {seed}" if seed is not None else ""))
            for case, generation in zip(fits, gen.generate([c.description for c in fits], seed=seed, on_batch=on_batch)):
                per_case[case.id].append(generation)
        for case in fits:
            self.generations[(model, case.id)] = per_case[case.id]
        tokens = sum(g.new_tokens for gs in per_case.values() for g in gs)
        self.batch_stats.append(GenerationBatchStats(model, len(fits), time.perf_counter() - start, tokens))

    # ------------------------------------------------------------------ one case
    def evaluate(self, case: Case, model: str, batch: Callable[[], list[Case]]) -> CaseResult:
        """Generate (with its batch) and judge one case, and return its verdict."""
        start = time.perf_counter()
        verdict = self.verdict(case.description)
        safety = SafetyCheck(verdict.blocked, verdict.reason, verdict.category)
        gated = self.options.is_gated(model)
        common = dict(n=self.options.n, safety=safety, gated=gated)
        if case.expect == "blocked" or verdict.blocked:
            result = score_case(case, model, **common)
        elif error := self.model_error(model):
            result = score_case(case, model, **common, error=error)
        else:
            key = (model, case.id)
            if key not in self.generations and key not in self.case_errors:
                self.ensure_generated(model, batch())
            if key in self.case_errors:
                result = score_case(case, model, **common, error=self.case_errors[key])
            else:
                samples = []
                for generation in self.generations[key]:
                    judged = self.judge.score(case.description, [d for d, _ in generation.domains])
                    samples.append((generation, judged.scores))
                result = score_case(case, model, **common, samples=samples)
        result.duration_s = round(time.perf_counter() - start, 4)
        return result

    # ------------------------------------------------------------------ what this process did
    def loaded_identity(self) -> dict[str, Any]:
        """What actually loaded here: the base, quantisation and kernel (None before any load)."""
        if self._generator is None:
            return {}
        loaded = self._generator.loaded
        return {"base": loaded.base.canonical, "base_sha256": loaded.base.file_hash, "quant": loaded.quant,
                "kernel": loaded.kernel, "device": loaded.device, "notes": list(loaded.notes)}

    def worker_output(self) -> dict[str, Any]:
        """Per-process statistics, sent to the xdist controller."""
        judge_stats = self.judge.stats() if hasattr(self.judge, "stats") else {}
        return {
            "pid": os.getpid(),
            "load_seconds": self.load_seconds,
            "batches": [asdict(b) for b in self.batch_stats],
            "judge_stats": judge_stats,
            "judge": judge_identity(self.judge),
            "adapter_hashes": self.adapter_hashes,
            "loaded": self.loaded_identity(),
            "model_errors": {**({"*": self._base_error} if self._base_error else {}), **self._adapter_errors},
        }


def judge_identity(judge: Any) -> dict[str, Any]:
    """Name, version and model of the judge actually used (read after use: a judge may settle
    its mode lazily)."""
    return {"name": getattr(judge, "name", type(judge).__name__), "version": str(getattr(judge, "version", "?")),
            "model": getattr(judge, "model", None)}
