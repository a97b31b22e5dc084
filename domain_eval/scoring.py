"""What a case's result *means*: slot scores, typed results and the pure verdict function.

A case asks for ``n`` domain names. Each of the ``n`` **slots** is scored:

- a valid, safe domain whose name (second-level label) has not filled a slot yet: the judge's
  overall score for it (1-10);
- a slot left empty: the floor, :data:`FLOOR` (1.0). A slot is empty when the model produced fewer
  than ``n`` usable names: invalid text, a repeated domain, a name dropped as unsafe, a TLD variant
  of a name already given (``lockandcar.co`` after ``lockandcar.com``), or nothing at all.

TLD variants fill one slot: offering ``pumpandamp.com/.co/.io`` is one naming idea, and a
founder asking for five names would count it as one. They still count towards ``yield`` (valid
distinct domains), so the report shows both how many domains and how many names a model gave.

A case's ``score`` is the mean over its slots (and over samples). ``quality`` is the judge's mean
over the valid domains only (what the harness reported before slot scores); ``yield`` is valid
distinct domains / n; ``distinct_names`` is distinct second-level labels / n. A case with no valid
domain scores the floor; it never drops out of a mean. A judge error on any domain of a sample
makes the case an error with no score: a score is never invented.

Everything here is pure: :func:`score_case` needs no pytest, model or judge to run.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping, Protocol, Sequence

#: Bumped whenever what a score means changes; baselines record it and refuse to mix versions.
SCORING_VERSION = 2
#: Bumped whenever the serialised CaseResult changes shape.
RESULT_SCHEMA = 2
#: The score of an empty slot: the bottom of the judge's 1-10 scale.
FLOOR = 1.0
#: Default largest drop of a group's mean slot score that the baseline gate allows, in points.
#: Set for the learned judge's scale, where v3 sits 0.68 above v2 overall (1.22 above the
#: floor); 0.5 suited the heuristic judge, whose scores sat 3.6 above the floor.
DEFAULT_MAX_REGRESSION = 0.25
#: The pseudo-model that owns cases expected to be blocked: the safety filter decides them
#: before any model runs, so they are one item each, not one per model.
SAFETY_FILTER = "safety-filter"
#: At most this many characters of a description are quoted in messages.
QUOTE_CHARS = 300

OUTCOMES = ("passed", "failed", "error", "missing", "invalid")


class ScoredGeneration(Protocol):
    """What :func:`score_case` needs of a generation (``domain_eval.generation.Generation``)."""

    raw: str
    domains: list[tuple[str, float]]
    dropped_unsafe: list[str]
    new_tokens: int
    seed: int | None


class JudgedDomain(Protocol):
    domain: str
    criteria: dict[str, float] | None
    overall: float | None
    error: str | None


def quote(text: str | None, limit: int = QUOTE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with a note of how much was left out."""
    flat = " ".join(str(text or "").split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}... ({len(flat):,} characters in all)"


def name_of(domain: str) -> str:
    """The second-level label that names the business: ``lockandcar`` for ``lockandcar.co.uk``."""
    from domain_eval.domains import split_domain

    try:
        label, _suffix = split_domain(domain)
    except ValueError:
        label = ""
    return label or domain.split(".", 1)[0]


@dataclass
class DomainResult:
    """One valid domain a sample produced, and whether it filled a slot."""

    domain: str
    confidence: float
    overall: float | None = None
    criteria: dict[str, float] | None = None
    error: str | None = None
    fills_slot: bool = False  # False: a TLD variant of a name that already filled one


@dataclass
class SampleResult:
    """One generation (greedy, or one seed) of one case, scored slot by slot."""

    seed: int | None
    raw: str
    new_tokens: int
    domains: list[DomainResult]
    dropped_unsafe: list[str]
    slots: list[float | None]  # n entries: a filled slot's judge score, FLOOR when empty
    score: float | None  # mean of slots; None when the judge failed on any domain
    quality: float | None  # judge mean over valid domains; None without any (or on judge error)
    yield_: float  # valid distinct domains / n
    distinct_names: float  # distinct second-level labels / n
    judge_errors: int

    @property
    def filled(self) -> int:
        return sum(1 for d in self.domains if d.fills_slot)


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else None


def _r(value: float | None, nd: int = 3) -> float | None:
    return None if value is None else round(value, nd)


@dataclass
class CaseResult:
    """The verdict on one (case, model) item. Serialised to JSON rows (``to_dict``) for xdist,
    ``cases.jsonl``, the report and the baseline; ``schema`` says which shape a row has."""

    key: str
    case_id: str
    category: str
    model: str
    description: str | None
    expect: str | None
    tags: list[str] = field(default_factory=list)
    n: int = 5
    blocked: bool | None = None
    block_reason: str | None = None
    block_category: str | None = None
    block_correct: bool | None = None
    samples: list[SampleResult] = field(default_factory=list)
    score: float | None = None
    quality: float | None = None
    yield_: float | None = None
    distinct_names: float | None = None
    filled_slots: float | None = None  # mean filled slots per sample: what min_valid counts
    criteria_mean: dict[str, float] | None = None
    mean_confidence: float | None = None
    judge_errors: int = 0
    unsafe_generated: int = 0  # names the model wrote that the output filter removed
    min_score: float | None = None
    min_valid: int | None = None
    gated: bool = True
    failures: list[str] = field(default_factory=list)
    threshold_only: bool = False  # every failure is a threshold miss (xfail for ungated models)
    outcome: str = "passed"
    duration_s: float | None = None
    nodeid: str | None = None
    pytest_outcome: str | None = None  # what pytest reported: passed, failed, error, xfailed, ...
    schema: int = RESULT_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["yield"] = out.pop("yield_")
        for sample in out["samples"]:
            sample["yield"] = sample.pop("yield_")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CaseResult":
        data = dict(data)
        if data.get("schema") != RESULT_SCHEMA:
            raise ValueError(f"result schema {data.get('schema')!r} is not {RESULT_SCHEMA}; re-run the evaluation")
        data["yield_"] = data.pop("yield", None)
        samples = []
        for s in data.pop("samples", None) or []:
            s = dict(s)
            s["yield_"] = s.pop("yield", 0.0)
            s["domains"] = [DomainResult(**d) for d in s.get("domains") or []]
            samples.append(SampleResult(**s))
        names = {f.name for f in fields(cls)}
        return cls(samples=samples, **{k: v for k, v in data.items() if k in names})


def score_sample(generation: ScoredGeneration, judged: Sequence[JudgedDomain], n: int) -> SampleResult:
    """Fill the ``n`` slots of one generation from its domains and their judgements."""
    by_domain = {j.domain: j for j in judged}
    domains: list[DomainResult] = []
    names: set[str] = set()
    slots: list[float | None] = []
    errors = 0
    for domain, conf in generation.domains[:n]:
        j = by_domain.get(domain)
        error = "not scored by the judge" if j is None else j.error
        if error is None and (j is None or j.overall is None):
            error = "the judge returned no score"
        result = DomainResult(domain, round(float(conf), 4), None if error else j.overall,  # type: ignore[union-attr]
                              None if error or j is None or not j.criteria else dict(j.criteria), error)
        errors += error is not None
        name = name_of(domain)
        if name not in names:
            names.add(name)
            result.fills_slot = True
            slots.append(result.overall)
        domains.append(result)
    slots.extend([FLOOR] * (n - len(slots)))
    good = [d.overall for d in domains if d.overall is not None]
    return SampleResult(
        seed=generation.seed, raw=generation.raw, new_tokens=generation.new_tokens, domains=domains,
        dropped_unsafe=list(generation.dropped_unsafe), slots=slots,
        score=None if errors else _r(_mean(s for s in slots if s is not None)),
        quality=None if errors else _r(_mean(good)),
        yield_=round(len(domains) / n, 4), distinct_names=round(len(names) / n, 4), judge_errors=errors,
    )


@dataclass(frozen=True)
class SafetyCheck:
    """The safety filter's verdict on a description (``SafetyFilter.check``)."""

    blocked: bool
    reason: str | None = None
    category: str | None = None


def score_case(
    case: Any,
    model: str,
    *,
    n: int,
    safety: SafetyCheck,
    samples: Sequence[tuple[ScoredGeneration, Sequence[JudgedDomain]]] = (),
    gated: bool = True,
    error: str | None = None,
) -> CaseResult:
    """The verdict on one case for one model: a pure function of what was generated and judged.

    ``case`` is a :class:`domain_eval.cases.Case`. ``samples`` pairs each generation with the
    judge's scores for its domains. ``error`` (the model could not load, the description is too
    long for its context...) makes the case an error without a score.
    """
    blocked_case = case.expect == "blocked"
    result = CaseResult(
        key=f"{case.id}[{model}]", case_id=case.id, category=case.category, model=model,
        description=case.description, expect=case.expect, tags=list(case.tags), n=n,
        blocked=safety.blocked, block_reason=safety.reason if safety.blocked else None,
        block_category=safety.category, block_correct=safety.blocked == blocked_case,
        min_score=None if blocked_case else case.min_score, min_valid=None if blocked_case else case.min_valid,
        gated=gated,
    )
    if blocked_case or safety.blocked:
        if not result.block_correct:
            result.failures.append("expected the safety filter to block this description, but it was allowed" if blocked_case
                                   else f"a safe description was blocked: {safety.reason}")
        result.outcome = "failed" if result.failures else "passed"
        return result
    if error is not None:
        result.failures.append(error)
        result.outcome = "error"
        return result
    if not samples:
        raise ValueError(f"case {case.id!r} for {model!r}: no generation to score")

    scored = [score_sample(gen, judged, n) for gen, judged in samples]
    result.samples = scored
    result.judge_errors = sum(s.judge_errors for s in scored)
    result.unsafe_generated = sum(len(s.dropped_unsafe) for s in scored)
    result.yield_ = _r(_mean(s.yield_ for s in scored))
    result.distinct_names = _r(_mean(s.distinct_names for s in scored))
    result.filled_slots = _r(_mean(float(s.filled) for s in scored))
    confidences = [d.confidence for s in scored for d in s.domains]
    result.mean_confidence = _r(_mean(confidences))
    if result.judge_errors:
        reasons = sorted({d.error for s in scored for d in s.domains if d.error})
        result.failures.append(f"judge error on {result.judge_errors} domain(s), so no score: " + "; ".join(reasons)[:300])
        result.outcome = "error"
        return result
    result.score = _r(_mean(s.score for s in scored if s.score is not None))
    qualities = [s.quality for s in scored if s.quality is not None]
    result.quality = _r(_mean(qualities))
    crit: dict[str, list[float]] = {}
    for s in scored:
        for d in s.domains:
            for k, v in (d.criteria or {}).items():
                crit.setdefault(k, []).append(float(v))
    result.criteria_mean = {k: round(math.fsum(v) / len(v), 3) for k, v in crit.items()} or None

    if case.min_valid is not None and result.filled_slots is not None and result.filled_slots < case.min_valid:
        result.failures.append(f"{result.filled_slots:g} distinct name(s) of {n} requested < min_valid {case.min_valid}")
    if case.min_score is not None and result.score is not None and result.score < case.min_score:
        result.failures.append(f"score {result.score:.2f} < min_score {case.min_score:g} "
                               f"(quality {_fmt(result.quality)} over valid domains, yield {result.yield_:.0%})")
    result.threshold_only = bool(result.failures)
    result.outcome = "failed" if result.failures else "passed"
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_failure(result: CaseResult) -> str:
    """A readable failure: the description (quoted briefly), the slots with scores, the reasons."""
    lines = [f"{result.key} ({result.category}): {quote(result.description)}"]
    if result.blocked:
        lines.append(f"  safety: blocked - {result.block_reason}")
    for sample in result.samples:
        seed = "greedy" if sample.seed is None else f"seed {sample.seed}"
        lines.append(f"  generated ({seed}): score {_fmt(sample.score)} over {len(sample.slots)} slots, "
                     f"quality {_fmt(sample.quality)}, {sample.filled} distinct name(s)")
        for d in sample.domains:
            judged = f"error: {d.error}" if d.error else f"{d.overall:.2f}"
            note = "" if d.fills_slot else "  (TLD variant: no slot)"
            lines.append(f"    {d.domain:<32} confidence {d.confidence:.2f}  judge {judged}{note}")
        empty = len(sample.slots) - sample.filled
        if empty:
            lines.append(f"    {empty} empty slot(s) at {FLOOR:g}" + (f"; raw output: {quote(sample.raw, 160)!r}" if not sample.domains else ""))
        if sample.dropped_unsafe:
            lines.append(f"    dropped as unsafe: {', '.join(sample.dropped_unsafe)}")
    lines.extend(f"  - {reason}" for reason in result.failures)
    return "\n".join(lines)
