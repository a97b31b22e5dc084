"""A SQLite cache of judgements, safe for several processes (pytest-xdist workers) at once.

Key: ``(judge name, model, judge version, description, domain)``. The judge version carries
the heuristic's formula version and mode, or the Groq prompt-template hash, so changing
the rules never serves stale scores. Value: the :class:`DomainScore` as JSON. Judge errors
are never cached (a later run retries them). Nothing secret is stored: no API key, no
request headers.

Replay: with ``--judge-cache PATH`` a recorded Groq run can be replayed in CI without
network access. When every requested item is in the cache the inner judge is not called at
all, so neither the network nor ``GROQ_API_KEY`` is needed; the key is demanded only when
some item misses.

Concurrency: WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` for writes and a bounded
retry loop on "database is locked"/"busy". One connection per process (re-opened after a
fork). If the cache cannot be used at all, the wrapper logs a warning and judges uncached.
"""
from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from domain_eval.judges.base import DomainScore, Judge, JudgeResult

__all__ = ["JudgeCache", "CachedJudge"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgements (
    judge       TEXT NOT NULL,
    model       TEXT NOT NULL,
    version     TEXT NOT NULL,
    description TEXT NOT NULL,
    domain      TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (judge, model, version, description, domain)
) WITHOUT ROWID
"""
_CHUNK = 400  # bound parameters per IN (...) query


def _is_lock_error(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


class JudgeCache:
    """The SQLite store. ``timeout``: SQLite busy timeout in seconds; ``retries``: extra
    attempts (with jittered exponential backoff) when SQLite still reports a lock."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0, retries: int = 12) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.retries = retries
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._stats = {"hits": 0, "misses": 0, "writes": 0, "errors": 0, "lock_retries": 0, "latency_s": 0.0}

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                log.debug("judge cache: journal_mode is %s, not wal", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _retry(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        delay = 0.02
        for attempt in range(self.retries + 1):
            try:
                with self._lock:
                    return fn(self._connect())
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or attempt == self.retries:
                    raise
                self._stats["lock_retries"] += 1
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- data -------------------------------------------------------------------------------
    def get_many(self, judge: str, model: str | None, version: str, description: str,
                 domains: list[str]) -> dict[str, DomainScore]:
        """Cached scores for ``domains`` (those found); counts hits and misses per distinct domain."""
        wanted = list(dict.fromkeys(domains))
        if not wanted:
            return {}
        t0 = time.perf_counter()

        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows: list[tuple[str, str]] = []
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i:i + _CHUNK]
                rows += conn.execute(
                    "SELECT domain, value FROM judgements WHERE judge = ? AND model = ? AND version = ? "
                    f"AND description = ? AND domain IN ({', '.join('?' * len(chunk))})",
                    (judge, model or "", version, description, *chunk),
                ).fetchall()
            return rows

        found: dict[str, DomainScore] = {}
        try:
            for domain, value in self._retry(read):
                try:
                    score = DomainScore.from_dict(json.loads(value))
                except (ValueError, KeyError, TypeError):
                    continue  # an unreadable row is a miss
                if score.error is None and score.criteria is not None:
                    found[domain] = score
        finally:
            self._stats["latency_s"] += time.perf_counter() - t0
        self._stats["hits"] += len(found)
        self._stats["misses"] += len(wanted) - len(found)
        return found

    def put_many(self, judge: str, model: str | None, version: str, description: str,
                 scores: list[DomainScore]) -> int:
        """Store successful scores (errors are skipped) in one transaction; returns rows written."""
        rows = [
            (judge, model or "", version, description, s.domain, json.dumps(s.to_dict(), sort_keys=True), time.time())
            for s in scores
            if s.error is None and s.criteria is not None and s.overall is not None
        ]
        if not rows:
            return 0
        t0 = time.perf_counter()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            self._retry(write)
        finally:
            self._stats["latency_s"] += time.perf_counter() - t0
        self._stats["writes"] += len(rows)
        return len(rows)

    def __len__(self) -> int:
        return int(self._retry(lambda c: c.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]))

    def stats(self) -> dict[str, Any]:
        s = dict(self._stats)
        s["latency_s"] = round(s["latency_s"], 6)
        s["path"] = str(self.path)
        return s


class CachedJudge:
    """Wrap any judge with a :class:`JudgeCache`: cached domains are served from SQLite, only
    the misses go to the inner judge (one call per :meth:`score`), and its successful scores
    are stored under the identity (model, version) the inner result reports."""

    def __init__(self, judge: Judge, cache: JudgeCache | str | Path) -> None:
        self.inner = judge
        self.cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)
        self._stats = {"requests": 0, "domains": 0, "total_latency_s": 0.0, "cache_failures": 0}

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str | None:
        return self.inner.model

    @property
    def version(self) -> str:
        return self.inner.version

    def score(self, description: str, domains: list[str]) -> JudgeResult:
        t0 = time.perf_counter()
        domains = list(domains)
        name, model, version = self.inner.name, self.inner.model, self.inner.version
        ident = {"name": name, "model": model, "version": version}
        try:
            cached = self.cache.get_many(name, model, version, description, domains)
        except sqlite3.Error as exc:
            self._cache_failed("read", exc)
            cached = {}
        misses = [d for d in dict.fromkeys(domains) if d not in cached]
        fresh: dict[str, DomainScore] = {}
        if misses:
            result = self.inner.score(description, misses)
            ident = dict(result.judge)
            fresh = {s.domain: s for s in result.scores}
            try:
                self.cache.put_many(ident["name"], ident.get("model"), ident["version"], description, result.scores)
            except sqlite3.Error as exc:
                self._cache_failed("write", exc)
        scores = []
        for d in domains:
            s = cached.get(d) or fresh.get(d) or DomainScore.failed(d, "not judged")
            scores.append(DomainScore(d, None if s.criteria is None else dict(s.criteria), s.overall, s.error,
                                      s.rationale))
        self._stats["requests"] += 1
        self._stats["domains"] += len(domains)
        self._stats["total_latency_s"] += time.perf_counter() - t0
        return JudgeResult.build(description, scores, ident)

    def _cache_failed(self, what: str, exc: BaseException) -> None:
        self._stats["cache_failures"] += 1
        self.cache._stats["errors"] += 1
        log.warning("judge cache %s failed (%s: %s); continuing without it", what, type(exc).__name__, exc)

    def stats(self) -> dict[str, Any]:
        """The inner judge's stats plus ``cache_hits``, ``cache_misses``, ``cache_writes``,
        ``cache_errors``, ``cache_latency_s`` and the wrapper's own latency."""
        s = dict(self.inner.stats())
        c = self.cache.stats()
        s.update(
            cache_hits=c["hits"], cache_misses=c["misses"], cache_writes=c["writes"], cache_errors=c["errors"],
            cache_lock_retries=c["lock_retries"], cache_latency_s=c["latency_s"], cache_path=c["path"],
            cached_requests=self._stats["requests"], cached_domains=self._stats["domains"],
            cached_total_latency_s=round(self._stats["total_latency_s"], 6),
        )
        return s
