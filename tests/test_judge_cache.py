"""The SQLite judge cache: keys, hit/miss accounting, no cached errors, concurrent writers."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import traceback

import pytest

from domain_eval.judges import CRITERIA, DomainScore, JudgeResult, make_judge
from domain_eval.judges.cache import CachedJudge, JudgeCache
from domain_eval.judges.heuristic import HeuristicJudge


def score(domain: str, value: float = 7.0) -> DomainScore:
    return DomainScore.scored(domain, {c: value for c in CRITERIA}, rationale="r")


class CountingJudge:
    """A fake judge that records what it was asked; 'bad*' domains get a judge error."""

    name = "fake"
    version = "3"

    def __init__(self, model: str | None = "m1") -> None:
        self.model = model
        self.calls: list[list[str]] = []

    def score(self, description: str, domains: list[str]) -> JudgeResult:
        self.calls.append(list(domains))
        scores = [DomainScore.failed(d, "boom") if d.startswith("bad") else score(d, float(len(d) % 9 + 1))
                  for d in domains]
        return JudgeResult.build(description, scores, {"name": self.name, "model": self.model,
                                                       "version": self.version})

    def stats(self) -> dict:
        return {"requests": len(self.calls), "errors": 0}


def test_round_trip_and_key_parts(tmp_path):
    cache = JudgeCache(tmp_path / "sub" / "cache.sqlite")
    assert cache.put_many("groq", "m", "v1", "desc", [score("a.com", 8), DomainScore.failed("b.com", "x")]) == 1
    got = cache.get_many("groq", "m", "v1", "desc", ["a.com", "b.com"])
    assert list(got) == ["a.com"] and got["a.com"].overall == 8.0 and got["a.com"].rationale == "r"
    for key in [("heuristic", "m", "v1", "desc"), ("groq", "m2", "v1", "desc"), ("groq", "m", "v2", "desc"),
                ("groq", "m", "v1", "other desc"), ("groq", None, "v1", "desc")]:
        assert cache.get_many(*key, ["a.com"]) == {}
    stats = cache.stats()
    assert stats["hits"] == 1 and stats["misses"] == 1 + 5 and stats["writes"] == 1
    assert stats["latency_s"] > 0
    assert len(cache) == 1
    cache.close()


def test_cached_judge_serves_hits_and_only_sends_misses(tmp_path):
    inner = CountingJudge()
    judge = CachedJudge(inner, JudgeCache(tmp_path / "c.sqlite"))
    assert (judge.name, judge.model, judge.version) == ("fake", "m1", "3")
    first = judge.score("desc", ["a.com", "bb.com", "bad.com"])
    assert inner.calls == [["a.com", "bb.com", "bad.com"]]
    assert first.errors == 1
    second = judge.score("desc", ["bb.com", "a.com", "bad.com", "new.com", "a.com"])
    assert inner.calls[1] == ["bad.com", "new.com"]  # errors are not cached: asked again
    assert [s.domain for s in second.scores] == ["bb.com", "a.com", "bad.com", "new.com", "a.com"]
    assert second.scores[1].to_dict() == first.scores[0].to_dict()
    assert second.scores[2].error == "boom" and second.scores[2].overall is None
    stats = judge.stats()
    assert stats["cache_hits"] == 2 and stats["cache_misses"] == 3 + 2
    assert stats["cache_writes"] == 2 + 1 and stats["requests"] == 2
    # a full hit does not call the inner judge at all
    judge.score("desc", ["a.com", "bb.com"])
    assert len(inner.calls) == 2


def test_make_judge_wraps_heuristic_with_cache(tmp_path):
    path = tmp_path / "h.sqlite"
    a = make_judge("heuristic", cache_path=path, semantic=False)
    assert isinstance(a, CachedJudge) and isinstance(a.inner, HeuristicJudge)
    r1 = a.score("mobile dog grooming service", ["groomvan.com", "-bad.com"])
    b = make_judge("heuristic", cache_path=path, semantic=False)
    r2 = b.score("mobile dog grooming service", ["groomvan.com", "-bad.com"])
    assert r1.to_dict() == r2.to_dict()
    assert b.stats()["cache_hits"] == 2 and b.inner.stats()["domains"] == 0


def test_unusable_cache_degrades_to_uncached(tmp_path, caplog):
    blocker = tmp_path / "not-a-db"
    blocker.mkdir()  # a directory where the SQLite file should be
    judge = CachedJudge(CountingJudge(), JudgeCache(blocker, retries=0))
    result = judge.score("d", ["a.com"])
    assert result.errors == 0 and result.scores[0].overall is not None
    assert judge.stats()["cache_errors"] == 2
    assert "judge cache" in caplog.text


# --------------------------------------------------------------------------- concurrency
def _writer(path: str, worker: int, rounds: int, timeout: float, retries: int, queue) -> None:
    try:
        cache = JudgeCache(path, timeout=timeout, retries=retries)
        judge = CachedJudge(CountingJudge(), cache)
        for i in range(rounds):
            domains = [f"w{worker}-r{i}-{k}.com" for k in range(3)] + [f"shared-{i}.com"]
            judge.score(f"description {i % 5}", domains)
            cache.get_many("fake", "m1", "3", f"description {i % 5}", domains)
        queue.put((worker, "ok", cache.stats()))
    except BaseException:  # report to the parent instead of dying silently
        queue.put((worker, "error", traceback.format_exc()))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
@pytest.mark.parametrize("timeout, retries", [(30.0, 12), (0.0, 200)], ids=["busy-timeout", "retry-loop"])
def test_concurrent_writers(tmp_path, timeout, retries):
    ctx = mp.get_context("fork")
    path = str(tmp_path / "shared.sqlite")
    workers, rounds = 4, 40
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, rounds, timeout, retries, queue)) for w in range(workers)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [r[2] for r in reports if r[1] != "ok"]
    assert not errors, errors[0]
    assert all(p.exitcode == 0 for p in procs)
    con = sqlite3.connect(path)
    try:
        (rows,) = con.execute("SELECT COUNT(*) FROM judgements").fetchone()
        (mode,) = con.execute("PRAGMA journal_mode").fetchone()
    finally:
        con.close()
    # per worker: 3 own domains per round; shared-i.com once per (description, i)
    assert rows == workers * rounds * 3 + rounds
    assert mode.lower() == "wal"
    stats = [r[2] for r in reports]
    assert sum(s["writes"] for s in stats) >= rows
    print(f"\nlock retries ({timeout=}):", sum(s["lock_retries"] for s in stats))
