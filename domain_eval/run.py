"""The per-process evaluation run: generations from the backend (this process's model, or a
server), cached per (model, case), and the hand-off to :func:`domain_eval.scoring.score_case`.

``EvalRun`` only orchestrates: what a result means lives in :mod:`domain_eval.scoring`, what the
options are in :mod:`domain_eval.config`, where text comes from in :mod:`domain_eval.backends`.
A model that fails to load is tried once; its cases then error with one short message while the
other models run.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from domain_eval.cases import Case
from domain_eval.config import EvalOptions
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


class EvalRun:
    """Per-process state: one backend (one base model with all adapters, or a server), one judge,
    one safety filter."""

    def __init__(self, options: EvalOptions, judge: Any, progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.judge = judge
        self._progress = progress or (lambda msg: None)
        self._backend: Any = None
        self._safety: Any = None
        self._verdicts: dict[str, Any] = {}
        self.generations: dict[tuple[str, str], list[Any]] = {}
        self.case_errors: dict[tuple[str, str], str] = {}
        self.batch_stats: list[GenerationBatchStats] = []

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
    @property
    def backend(self) -> Any:
        if self._backend is None:
            from domain_eval.backends import make_backend

            self._backend = make_backend(self.options, self.safety, self._progress)
        return self._backend

    def model_error(self, model: str) -> str | None:
        """Why ``model`` cannot run in this process (loading or connecting at most once), or None."""
        return self.backend.model_error(model)

    # ------------------------------------------------------------------ generation
    def ensure_generated(self, model: str, cases: list[Case]) -> None:
        """Generate, in batches, for every case of ``cases`` not generated yet for ``model``."""
        from domain_eval.backends import GenerationFailure

        todo = [c for c in cases if c.expect == "allowed" and (model, c.id) not in self.generations
                and (model, c.id) not in self.case_errors and not self.verdict(c.description).blocked]
        if not todo or self.model_error(model):
            return
        start = time.perf_counter()
        per_case: dict[str, list[Any]] = {c.id: [] for c in todo}

        def on_batch(done: int, total: int) -> None:
            if done < total:  # a long silence otherwise: all of a model's cases come out at once
                self._progress(f"  {model}: {done}/{total} generated ({time.perf_counter() - start:.0f} s)")

        for seed in self.options.seeds:
            self._progress(f"generating {model}: {len(todo)} case(s)" + (f", seed {seed}" if seed is not None else ""))
            outcomes = self.backend.generate(model, [c.description for c in todo], seed, on_batch)
            for case, outcome in zip(todo, outcomes):
                if isinstance(outcome, GenerationFailure):
                    # One failed sample fails the case: a score from the other samples would
                    # silently measure fewer generations than asked for.
                    self.case_errors.setdefault((model, case.id), outcome.reason)
                else:
                    per_case[case.id].append(outcome)
        generated = [c for c in todo if (model, c.id) not in self.case_errors]
        for case in generated:
            self.generations[(model, case.id)] = per_case[case.id]
        tokens = sum(g.new_tokens for c in generated for g in per_case[c.id])
        self.batch_stats.append(GenerationBatchStats(model, len(generated), time.perf_counter() - start, tokens))

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
    def worker_output(self) -> dict[str, Any]:
        """Per-process statistics, sent to the xdist controller."""
        judge_stats = self.judge.stats() if hasattr(self.judge, "stats") else {}
        backend = self._backend
        if backend is None:  # nothing generated in this process
            return {"pid": os.getpid(), "load_seconds": None, "batches": [], "judge_stats": judge_stats,
                    "judge": judge_identity(self.judge), "adapter_hashes": {}, "loaded": {},
                    "backend": self.options.backend, "served": None, "backend_stats": {}, "model_errors": {}}
        return {
            "pid": os.getpid(),
            "load_seconds": backend.load_seconds,
            "batches": [asdict(b) for b in self.batch_stats],
            "judge_stats": judge_stats,
            "judge": judge_identity(self.judge),
            "adapter_hashes": backend.adapter_hashes,
            "loaded": backend.identity(),
            "backend": backend.name,
            "served": backend.served(),
            "backend_stats": backend.stats(),
            "model_errors": backend.errors(),
        }


def judge_identity(judge: Any) -> dict[str, Any]:
    """Name, version and model of the judge actually used (read after use: a judge may settle
    its mode lazily)."""
    return {"name": getattr(judge, "name", type(judge).__name__), "version": str(getattr(judge, "version", "?")),
            "model": getattr(judge, "model", None)}
