"""The typed evaluation run: options, lazily loaded models/judge, cached batched generation,
and per-case scoring into plain JSON rows. The pytest plugin is a thin shell around this."""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from domain_eval.cases import Case

BASE = "base"
ALL = "all"


@dataclass
class EvalOptions:
    """Every knob of an evaluation run; plain values so it serialises into run metadata.

    models: adapter names in models_dir, adapter folders, or "base"; resolved from --model.
    gate_models: models whose score thresholds fail the run; other models are reported
        (their threshold misses show as xfail). Safety expectations are always enforced.
    samples: generations per case; 1 means greedy decoding, more means seeded sampling
        with seeds seed, seed+1, ...
    """

    models: list[str] = field(default_factory=list)
    models_dir: str = "models"
    base: str = "smollm2-135m"
    quant: str = "4bit"
    cpu_kernel: str = "dequantized"
    judge: str = "heuristic"
    judge_model: str | None = None
    judge_cache: str | None = None
    samples: int = 1
    seed: int = 0
    n: int = 5
    batch_size: int = 64
    max_new_tokens: int = 64
    report_dir: str = "results"
    baseline: str | None = None
    write_baseline: str | None = None
    max_regression: float = 0.5
    gate_models: list[str] | None = None  # None: every model is gated
    safety_policies: list[str] = field(default_factory=list)
    report: bool = True

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {self.samples}")
        if self.max_regression < 0:
            raise ValueError(f"--max-regression must be >= 0, got {self.max_regression}")
        from domain_eval.models import CPU_KERNELS, QUANT_CHOICES  # cheap: no torch at import

        if self.quant not in QUANT_CHOICES:
            raise ValueError(f"--quant must be {' or '.join(QUANT_CHOICES)}, got {self.quant!r}")
        if self.cpu_kernel not in CPU_KERNELS:
            raise ValueError(f"--cpu-kernel must be {' or '.join(CPU_KERNELS)}, got {self.cpu_kernel!r}")

    def is_gated(self, model: str) -> bool:
        return self.gate_models is None or model in self.gate_models

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_models(requested: Iterable[str], models_dir: str | Path) -> list[str]:
    """Expand comma lists, 'all' and the default (every adapter in models_dir, else base)."""
    from domain_eval.models import list_adapters

    names: list[str] = []
    for item in requested:
        names.extend(n.strip() for n in str(item).split(",") if n.strip())
    if not names:
        names = list_adapters(models_dir) or [BASE]
    out: list[str] = []
    for name in names:
        for expanded in (list_adapters(models_dir) if name == ALL else [name]):
            if expanded not in out:
                out.append(expanded)
    return out


def model_label(name: str) -> str:
    """The id used in test ids and tables: a folder path becomes its folder name."""
    return Path(name).name if os.sep in name or "/" in name else name


class CaseFailure(AssertionError):
    """A case that did not meet its expectations: a finding, reported without a traceback."""


class JudgeFailed(RuntimeError):
    """The judge could not score a case: counted as an error, never as a score."""


@dataclass
class GenerationBatchStats:
    model: str
    cases: int
    seconds: float
    new_tokens: int


class EvalRun:
    """Per-process state: one base model with all adapters, one judge, one safety filter."""

    def __init__(self, options: EvalOptions, judge_factory: Callable[[], Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self._judge_factory = judge_factory
        self._progress = progress or (lambda msg: None)
        self._generator: Any = None
        self._judge: Any = None
        self._safety: Any = None
        self.generations: dict[tuple[str, str], list[Any]] = {}
        self.batch_stats: list[GenerationBatchStats] = []
        self.load_seconds: float | None = None
        self.adapter_hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ lazily built parts
    @property
    def safety(self) -> Any:
        if self._safety is None:
            from domain_eval.safety import SafetyFilter, default_filter

            self._safety = SafetyFilter(extra_policies=self.options.safety_policies) if self.options.safety_policies else default_filter()
        return self._safety

    @property
    def judge(self) -> Any:
        if self._judge is None:
            if self._judge_factory is not None:
                self._judge = self._judge_factory()
            if self._judge is None:
                from domain_eval.judges import make_judge

                self._judge = make_judge(self.options.judge, model=self.options.judge_model, cache_path=self.options.judge_cache)
        return self._judge

    @property
    def generator(self) -> Any:
        if self._generator is None:
            from domain_eval.generation import DomainNameGenerator, GenerationConfig
            from domain_eval.models import adapter_hash, configure_threads

            configure_threads()
            start = time.perf_counter()
            adapters = {model_label(m): m for m in self.options.models if m != BASE}
            self._progress(f"loading {self.options.base} ({self.options.quant}) with adapters: {', '.join(adapters) or 'none'}")
            self._generator = DomainNameGenerator(
                base_model=self.options.base, adapter=adapters or None, quant=self.options.quant,
                cpu_kernel=self.options.cpu_kernel,
                models_dir=self.options.models_dir, safety=self.safety,
                config=GenerationConfig(n=self.options.n, batch_size=self.options.batch_size,
                                        max_new_tokens=self.options.max_new_tokens),
            )
            self.load_seconds = time.perf_counter() - start
            self.adapter_hashes = {name: adapter_hash(path) for name, path in self._generator.adapter_paths.items()}
        return self._generator

    # ------------------------------------------------------------------ generation
    def ensure_generated(self, model: str, cases: list[Case]) -> None:
        """Generate, in batches, for every case of ``cases`` not generated yet for ``model``."""
        # Cases expected to be blocked are never generated for, even when batched alongside.
        todo = [c for c in cases if c.expect == "allowed" and (model, c.id) not in self.generations]
        if not todo:
            return
        gen = self.generator
        gen.use(model)
        start = time.perf_counter()
        per_case: dict[str, list[Any]] = {c.id: [] for c in todo}
        descriptions = [c.description for c in todo]
        seeds: list[int | None] = [None] if self.options.samples == 1 else [self.options.seed + i for i in range(self.options.samples)]

        def on_batch(done: int, total: int) -> None:
            if done < total:  # a long silence otherwise: all of a model's cases come out at once
                self._progress(f"  {model}: {done}/{total} generated ({time.perf_counter() - start:.0f} s)")

        for seed in seeds:
            self._progress(f"generating {model}: {len(todo)} case(s)" + (f", seed {seed}" if seed is not None else ""))
            for case, generation in zip(todo, gen.generate(descriptions, seed=seed, on_batch=on_batch)):
                per_case[case.id].append(generation)
        for case in todo:
            self.generations[(model, case.id)] = per_case[case.id]
        tokens = sum(g.new_tokens for gs in per_case.values() for g in gs)
        self.batch_stats.append(GenerationBatchStats(model, len(todo), time.perf_counter() - start, tokens))

    # ------------------------------------------------------------------ one case
    def evaluate(self, case: Case, model: str, batch: Callable[[], list[Case]]) -> dict[str, Any]:
        """Score one (case, model) into a JSON row; the row's ``failures`` say what was not met."""
        start = time.perf_counter()
        verdict = self.safety.check(case.description)
        row: dict[str, Any] = {
            "case_id": case.id, "category": case.category, "model": model, "key": f"{case.id}[{model}]",
            "description": case.description, "expect": case.expect, "tags": list(case.tags),
            "blocked": verdict.blocked, "block_reason": verdict.reason if verdict.blocked else None,
            "block_category": verdict.category, "block_correct": verdict.blocked == (case.expect == "blocked"),
            "samples": [], "n_valid": None, "valid_rate": None, "judge_mean": None, "criteria_mean": None,
            "mean_confidence": None, "judge_errors": 0, "dropped_unsafe": 0,
            "min_score": case.min_score, "min_valid": case.min_valid, "gated": self.options.is_gated(model),
            "failures": [], "outcome": "passed",
        }
        failures: list[str] = row["failures"]
        if case.expect == "blocked":
            if not verdict.blocked:
                failures.append("expected the safety filter to block this description, but it was allowed")
            row["duration_s"] = round(time.perf_counter() - start, 4)
            row["outcome"] = "failed" if failures else "passed"
            return row
        if verdict.blocked:
            failures.append(f"a safe description was blocked: {verdict.reason}")
            row["outcome"] = "failed"
            row["duration_s"] = round(time.perf_counter() - start, 4)
            return row

        if (model, case.id) not in self.generations:
            self.ensure_generated(model, batch())
        generations = self.generations[(model, case.id)]
        judge_means: list[float] = []
        criteria: dict[str, list[float]] = {}
        confidences: list[float] = []
        valid_counts: list[int] = []
        for generation in generations:
            domains = [d for d, _ in generation.domains]
            result = self.judge.score(case.description, domains)
            scores = {s.domain: s for s in result.scores}
            sample = {
                "seed": generation.seed, "raw": generation.raw, "new_tokens": generation.new_tokens,
                "dropped_unsafe": list(generation.dropped_unsafe),
                "domains": [], "judge_mean": result.mean, "judge_errors": int(result.errors),
            }
            for domain, conf in generation.domains:
                s = scores.get(domain)
                sample["domains"].append({
                    "domain": domain, "confidence": conf, "overall": s.overall if s else None,
                    "criteria": dict(s.criteria) if s and s.criteria else None, "error": s.error if s else "not scored",
                })
                confidences.append(conf)
                if s and s.criteria and s.error is None:
                    for k, v in s.criteria.items():
                        criteria.setdefault(k, []).append(float(v))
                unsafe = self.safety.check_domain(domain)
                if unsafe.blocked:
                    failures.append(f"generated domain {domain} fails the safety filter: {unsafe.reason}")
            row["samples"].append(sample)
            row["judge_errors"] += int(result.errors)
            row["dropped_unsafe"] += len(generation.dropped_unsafe)
            valid_counts.append(len(domains))
            if result.mean is not None:
                judge_means.append(result.mean)
        row["n_valid"] = round(statistics.fmean(valid_counts), 3)
        row["valid_rate"] = round(row["n_valid"] / self.options.n, 3)
        row["judge_mean"] = round(statistics.fmean(judge_means), 3) if judge_means else None
        row["criteria_mean"] = {k: round(statistics.fmean(v), 3) for k, v in criteria.items()} or None
        row["mean_confidence"] = round(statistics.fmean(confidences), 3) if confidences else None
        threshold_failures: list[str] = []
        if row["n_valid"] < case.min_valid:
            threshold_failures.append(f"{row['n_valid']:g} valid domain(s) < min_valid {case.min_valid}")
        if row["judge_errors"] and row["judge_mean"] is None and valid_counts and any(valid_counts):
            row["outcome"] = "error"
            failures.append(f"judge error on every domain ({row['judge_errors']} error(s)); no score recorded")
        elif case.min_score is not None and row["judge_mean"] is not None and row["judge_mean"] < case.min_score:
            # With no valid domain there is nothing to score: min_valid (default 1) is what fails.
            threshold_failures.append(f"judge mean {row['judge_mean']:.2f} < min_score {case.min_score:g}")
        failures.extend(threshold_failures)
        if row["outcome"] != "error":
            row["outcome"] = "failed" if failures else "passed"
        row["threshold_only"] = bool(threshold_failures) and len(failures) == len(threshold_failures)
        row["duration_s"] = round(time.perf_counter() - start, 4)
        return row

    def worker_output(self) -> dict[str, Any]:
        """Per-process statistics, sent to the xdist controller."""
        judge_stats = self._judge.stats() if self._judge is not None and hasattr(self._judge, "stats") else {}
        return {
            "pid": os.getpid(),
            "load_seconds": self.load_seconds,
            "batches": [asdict(b) for b in self.batch_stats],
            "judge_stats": judge_stats,
            "adapter_hashes": self.adapter_hashes,
            "kernel": self._generator.loaded.kernel if self._generator is not None else None,
        }


def format_failure(row: dict[str, Any]) -> str:
    """A readable failure: description, domains with scores, and the reasons."""
    lines = [f"{row['key']} ({row['category']}): {row['description']}"]
    if row.get("blocked"):
        lines.append(f"  safety: blocked - {row.get('block_reason')}")
    for sample in row.get("samples", []):
        seed = "greedy" if sample["seed"] is None else f"seed {sample['seed']}"
        lines.append(f"  generated ({seed}), judge mean {sample['judge_mean']}:")
        for d in sample["domains"] or []:
            score = "error: " + d["error"] if d.get("error") else f"{d['overall']:.2f}"
            lines.append(f"    {d['domain']:<32} confidence {d['confidence']:.2f}  judge {score}")
        if not sample["domains"]:
            lines.append(f"    (no valid domain) raw output: {sample['raw'][:200]!r}")
    lines.extend(f"  - {reason}" for reason in row.get("failures", []))
    return "\n".join(lines)


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True)
