"""Judges that score suggested domain names for a business description.

* ``heuristic`` (default): offline and deterministic; semantic relevance via a bundled
  sentence-embedding model, which it requires (``pip install 'domain-eval[semantic]'``)
  (:mod:`.heuristic`).
* ``heuristic-lexical``: the same judge with lexical relevance only (no embedding model).
* ``groq``: LLM-as-a-judge through the Groq API (:mod:`.groq`).
* any judge can be wrapped with a SQLite cache (:mod:`.cache`), e.g. to replay a Groq-judged
  run offline: ``make_judge("groq", cache_path="judge-cache.sqlite")``.

Importing this package is cheap: torch, sentence-transformers and groq load lazily.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain_eval.judges.base import (
    CRITERIA,
    JUDGE_NAMES,
    DomainScore,
    Judge,
    JudgeError,
    JudgeResult,
    check_judge_config,
    make_judge,
    overall_of,
)

__all__ = [
    "CRITERIA",
    "JUDGE_NAMES",
    "DomainScore",
    "Judge",
    "JudgeError",
    "JudgeResult",
    "check_judge_config",
    "make_judge",
    "overall_of",
    "HeuristicJudge",
    "GroqJudge",
    "CachedJudge",
    "JudgeCache",
]

if TYPE_CHECKING:
    from domain_eval.judges.cache import CachedJudge, JudgeCache
    from domain_eval.judges.groq import GroqJudge
    from domain_eval.judges.heuristic import HeuristicJudge

_LAZY = {
    "HeuristicJudge": "domain_eval.judges.heuristic",
    "GroqJudge": "domain_eval.judges.groq",
    "CachedJudge": "domain_eval.judges.cache",
    "JudgeCache": "domain_eval.judges.cache",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'domain_eval.judges' has no attribute {name!r}")
