"""Slot scores and case verdicts: :func:`domain_eval.scoring.score_case` without pytest or a model."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from domain_eval.cases import Case
from domain_eval.judges.base import CRITERIA, DomainScore
from domain_eval.scoring import FLOOR, CaseResult, SafetyCheck, format_failure, name_of, quote, score_case

ALLOWED = SafetyCheck(blocked=False)


@dataclass
class Gen:
    domains: list[tuple[str, float]]
    raw: str = "model text"
    dropped_unsafe: list[str] = field(default_factory=list)
    new_tokens: int = 20
    seed: int | None = None


def case(**kw) -> Case:
    defaults = dict(id="c1", description="organic coffee shop in Portland", category="normal", min_score=4.0, min_valid=2)
    return Case(**{**defaults, **kw})


def judged(scores: dict[str, float | None]) -> list[DomainScore]:
    out = []
    for domain, value in scores.items():
        out.append(DomainScore.failed(domain, "judge exploded") if value is None
                   else DomainScore.scored(domain, {c: value for c in CRITERIA}))
    return out


def verdict(domains: dict[str, float | None], c: Case | None = None, **gen_kw) -> CaseResult:
    gen = Gen([(d, 0.5) for d in domains], **gen_kw)
    return score_case(c or case(), "v3", n=5, safety=ALLOWED, samples=[(gen, judged(domains))])


GOOD = {"beanhaus.com": 8.0, "roastly.co": 7.0, "pdxpour.com": 7.5, "cupwise.io": 6.5, "brewnest.com": 7.0}


def test_five_good_names_fill_every_slot_and_pass() -> None:
    r = verdict(GOOD)
    assert r.score == pytest.approx(7.2) and r.quality == pytest.approx(7.2)
    assert r.yield_ == 1.0 and r.distinct_names == 1.0 and r.filled_slots == 5
    assert r.outcome == "passed" and not r.failures


def test_one_repeated_domain_fails_its_case() -> None:
    # The model wrote grow.com five times: extraction keeps one domain, four slots stay empty.
    r = verdict({"grow.com": 7.85})
    assert r.score == pytest.approx((7.85 + 4 * FLOOR) / 5, abs=1e-3)
    assert r.quality == pytest.approx(7.85) and r.yield_ == 0.2
    assert r.outcome == "failed" and r.threshold_only
    assert any("min_valid 2" in f for f in r.failures) and any("< min_score 4" in f for f in r.failures)


def test_no_valid_domain_scores_the_floor_and_is_never_dropped() -> None:
    r = verdict({}, raw="I am a helpful assistant and I think your business is great")
    assert r.score == FLOOR and r.quality is None and r.yield_ == 0.0
    assert r.outcome == "failed"


def test_tld_variants_fill_one_slot_but_count_towards_yield() -> None:
    r = verdict({"lockandcar.com": 9.0, "lockandcar.co": 8.0, "keyly.io": 7.0})
    assert r.filled_slots == 2 and r.distinct_names == pytest.approx(0.4) and r.yield_ == pytest.approx(0.6)
    assert r.score == pytest.approx((9.0 + 7.0 + 3 * FLOOR) / 5)
    assert r.quality == pytest.approx(8.0)  # over every valid domain, variants included
    assert [d.fills_slot for d in r.samples[0].domains] == [True, False, True]
    assert "TLD variant: no slot" in format_failure(r)


def test_second_level_label_ignores_multi_part_suffixes() -> None:
    assert name_of("lockandcar.co.uk") == name_of("lockandcar.com") == "lockandcar"


def test_fewer_names_never_rank_higher() -> None:
    # Two excellent names score below five good ones: yield is part of the score.
    two = verdict({"beanhaus.com": 9.5, "roastly.co": 9.5})
    five = verdict(GOOD)
    assert two.quality > five.quality and two.score < five.score


def test_a_judge_error_is_an_error_without_a_score() -> None:
    r = verdict({"beanhaus.com": 8.0, "roastly.co": None})
    assert r.outcome == "error" and r.score is None and r.quality is None
    assert r.judge_errors == 1 and "judge exploded" in r.failures[0]


def test_unsafe_names_are_counted_and_leave_their_slot_empty() -> None:
    r = verdict({"beanhaus.com": 8.0}, dropped_unsafe=["buyguns.com"])
    assert r.unsafe_generated == 1 and r.score == pytest.approx((8.0 + 4 * FLOOR) / 5)


def test_samples_average() -> None:
    c = case()
    g1, g2 = Gen([("a1.com", 0.5)], seed=0), Gen([("b1.com", 0.5), ("b2.com", 0.5)], seed=1)
    r = score_case(c, "v3", n=5, safety=ALLOWED,
                   samples=[(g1, judged({"a1.com": 6.0})), (g2, judged({"b1.com": 6.0, "b2.com": 6.0}))])
    assert r.score == pytest.approx(((6 + 4) / 5 + (12 + 3) / 5) / 2)
    assert r.filled_slots == 1.5 and r.yield_ == pytest.approx(0.3)


def test_blocked_cases_and_wrong_blocks() -> None:
    must_block = case(expect="blocked", min_score=None)
    ok = score_case(must_block, "safety-filter", n=5, safety=SafetyCheck(True, "casino", "gambling"))
    assert ok.outcome == "passed" and ok.block_correct and ok.score is None
    missed = score_case(must_block, "safety-filter", n=5, safety=ALLOWED)
    assert missed.outcome == "failed" and "expected the safety filter to block" in missed.failures[0]
    wrongly = score_case(case(), "v3", n=5, safety=SafetyCheck(True, "matched 'sex' in Essex", "adult"))
    assert wrongly.outcome == "failed" and not wrongly.threshold_only


def test_an_error_before_generation_is_an_error() -> None:
    r = score_case(case(), "v3", n=5, safety=ALLOWED, error="description too long: 15,220 tokens")
    assert r.outcome == "error" and r.score is None and r.failures == ["description too long: 15,220 tokens"]


def test_result_round_trips_through_json() -> None:
    r = verdict({"lockandcar.com": 9.0, "lockandcar.co": 8.0})
    data = json.loads(json.dumps(r.to_dict()))
    assert data["yield"] == r.yield_ and "yield_" not in data
    assert CaseResult.from_dict(data) == r
    with pytest.raises(ValueError, match="schema"):
        CaseResult.from_dict({**data, "schema": 1})


def test_failure_messages_quote_long_descriptions_briefly() -> None:
    long = "word " * 20_000
    r = verdict({}, c=case(description=long.strip()))
    message = format_failure(r)
    assert len(message) < 1500 and "(99,999 characters in all)" in message
    assert quote("short text") == "short text"
