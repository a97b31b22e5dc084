"""LLM-as-a-judge through the Groq chat-completions API.

* One request per description judges all of its domains (``temperature=0``, JSON mode).
* The reply is validated strictly: every requested domain exactly once, no unknown domains,
  all five criteria numbers in [1, 10]. A malformed reply (including an HTTP 200 whose body
  is not JSON or not a chat completion) is retried once (only for the affected domains); if
  it is still malformed those domains get a judge error. A score is never substituted.
* HTTP 429, 5xx and connection errors are retried with bounded exponential backoff
  (``backoff_base * 2**n`` capped at ``max_backoff``, ``max_attempts`` in all), honouring a
  ``retry-after`` / ``retry-after-ms`` header (capped at ``max_retry_after``). The sleep
  function is injectable. Other 4xx are not retried: the domains get a judge error, except
  configuration errors (401/403 bad key, 400 ``model_decommissioned``, 404 unknown model)
  which raise :class:`~domain_eval.judges.base.JudgeError` with a fix-it message.
* The API key is read only from ``GROQ_API_KEY`` when a request is about to be sent. It is
  never logged, printed, stored in results or in the cache, and it is redacted from any
  error text that might echo it. A missing key raises JudgeError suggesting
  ``--judge heuristic``; with a judge cache that holds every item, no key is needed
  (see :mod:`domain_eval.judges.cache`).

``groq`` is imported lazily (inside methods), so importing this module stays cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from domain_eval.judges.base import CRITERIA, DomainScore, JudgeError, JudgeResult

__all__ = ["GroqJudge", "DEFAULT_MODEL", "LEGACY_MODEL", "KNOWN_MODELS", "SYSTEM_PROMPT", "USER_TEMPLATE",
           "parse_reply", "PROMPT_HASH", "require_api_key"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/gpt-oss-120b"
#: The original system's judge model; retired by Groq (August 2026) but kept selectable.
LEGACY_MODEL = "llama-3.3-70b-versatile"
KNOWN_MODELS = (DEFAULT_MODEL, LEGACY_MODEL)
API_KEY_ENV = "GROQ_API_KEY"
BASE_URL_ENV = "GROQ_BASE_URL"

def _rubric() -> str:
    """The raters' rubric (``domain_eval/data/judge_rubric.md``) without its notes for human raters.

    The LLM judge reads the very text the human raters followed, so its scores mean the same
    thing and ``domain-eval judge-agreement`` compares like with like."""
    text = (Path(__file__).resolve().parent.parent / "data" / "judge_rubric.md").read_text(encoding="utf-8")
    return text.split("## Rules for raters")[0].strip()


SYSTEM_PROMPT = ("You are a careful, consistent rater of domain names for businesses. Follow this rubric exactly.\n\n"
                 + _rubric()
                 + "\n\nJudge each domain exactly as written, independently of the others. An invalid domain scores 1 "
                   "on every criterion. Reply with a single JSON object and nothing else.")

USER_TEMPLATE = """Business description:
{description}

Candidate domains (JSON array; rate each exactly once and copy each domain string exactly):
{domains_json}

Reply with only this JSON object:
{{"scores": [{{"domain": "<domain as given>", "relevance": <1-10>, "memorability": <1-10>, "brandability": <1-10>, "technical_quality": <1-10>, "creativity": <1-10>, "overall": <1-10>, "rationale": "<one short sentence>"}}]}}"""

_REQUEST_PARAMS = {"temperature": 0, "response_format": {"type": "json_object"}}
#: Identifies the prompt and request parameters: part of the judge version, hence of the cache key.
PROMPT_HASH = hashlib.sha256(
    json.dumps([SYSTEM_PROMPT, USER_TEMPLATE, _REQUEST_PARAMS], sort_keys=True).encode()
).hexdigest()[:12]
GROQ_JUDGE_VERSION = f"2.0+prompt.{PROMPT_HASH}"


class _RequestFailed(Exception):
    """The request for these domains failed for good (after any retries)."""


class _Malformed(Exception):
    """The API answered, but not with a usable JSON reply (e.g. 400 json_validate_failed)."""


def _api_key() -> str | None:
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


def require_api_key() -> None:
    """Raise JudgeError when ``GROQ_API_KEY`` is not set (the key itself is never shown)."""
    if _api_key() is None:
        raise JudgeError(
            f"the Groq judge needs an API key in the {API_KEY_ENV} environment variable, which is not set. "
            f"Set it, replay a recorded run with --judge-cache PATH, or use the offline judge: --judge heuristic"
        )


def _key(domain: str) -> str:
    """How requested and returned domain strings are matched: trimmed, case-folded, no final dot."""
    return str(domain).strip().lower().rstrip(".")


def parse_reply(content: str | None, requested: list[str]) -> tuple[dict[str, DomainScore], dict[str, str]]:
    """Validate a judge reply against the requested domains.

    Returns ``(good, bad)``: ``good`` maps requested domain -> DomainScore for entries that
    passed every check; ``bad`` maps requested domain -> why it could not be accepted. A reply
    that is not a JSON object with a ``scores`` list, or that names a domain that was not
    requested, is rejected as a whole (every requested domain lands in ``bad``).
    """
    by_key = {_key(d): d for d in requested}

    def reject_all(reason: str) -> tuple[dict, dict]:
        return {}, {d: reason for d in requested}

    if content is not None and not isinstance(content, str):
        return reject_all(f"reply content is not text: {type(content).__name__}")
    if content is None or not content.strip():
        return reject_all("empty reply")
    try:
        data = json.loads(content)
    except ValueError as exc:
        return reject_all(f"reply is not valid JSON ({exc.msg} at char {exc.pos})")
    if not isinstance(data, dict) or not isinstance(data.get("scores"), list):
        return reject_all('reply is not a JSON object with a "scores" list')
    entries: dict[str, list[dict]] = {}
    for i, item in enumerate(data["scores"]):
        if not isinstance(item, dict) or not isinstance(item.get("domain"), str):
            return reject_all(f"scores[{i}] is not an object with a string 'domain'")
        k = _key(item["domain"])
        if k not in by_key:
            return reject_all(f"reply contains a domain that was not requested: {item['domain']!r}")
        entries.setdefault(k, []).append(item)
    good: dict[str, DomainScore] = {}
    bad: dict[str, str] = {}
    for k, domain in by_key.items():
        items = entries.get(k, [])
        if not items:
            bad[domain] = "domain missing from the reply"
            continue
        if len(items) > 1:
            bad[domain] = f"domain appears {len(items)} times in the reply"
            continue
        item = items[0]
        crit: dict[str, float] = {}
        problem = None
        for c in (*CRITERIA, "overall"):
            v = item.get(c)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                problem = f"criterion {c!r} is not a number: {v!r}"
                break
            if not 1 <= v <= 10:
                problem = f"criterion {c!r} is out of range [1, 10]: {v!r}"
                break
            crit[c] = float(v)
        rationale = item.get("rationale")
        if problem is None and rationale is not None and not isinstance(rationale, str):
            problem = f"rationale is not a string: {rationale!r}"
        if problem:
            bad[domain] = problem
        else:
            overall = crit.pop("overall")
            good[domain] = DomainScore.scored(domain, crit, rationale=rationale, overall=overall)
    return good, bad


class GroqJudge:
    """Judge with a Groq-hosted LLM (see the module docstring).

    ``model``: chat model (default :data:`DEFAULT_MODEL`; :data:`LEGACY_MODEL` selectable).
    ``base_url``: API root (default ``$GROQ_BASE_URL``, else Groq's). ``timeout``: seconds per
    HTTP request. ``max_attempts``/``backoff_base``/``max_backoff``/``max_retry_after``/``sleep``:
    retry policy for 429/5xx/connection errors. ``malformed_retries``: extra requests after a
    malformed reply (1).
    """

    name = "groq"

    def __init__(self, model: str | None = None, *, base_url: str | None = None, timeout: float = 60.0,
                 max_attempts: int = 4, backoff_base: float = 0.5, max_backoff: float = 8.0,
                 max_retry_after: float = 60.0, malformed_retries: int = 1,
                 sleep: Callable[[float], None] | None = None, max_completion_tokens: int | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.model = model or DEFAULT_MODEL
        self.version = GROQ_JUDGE_VERSION
        self.base_url = base_url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.malformed_retries = malformed_retries
        self.max_completion_tokens = max_completion_tokens
        self._sleep = sleep if sleep is not None else time.sleep
        self._client_obj = None
        self._client_for: tuple[str, str | None] | None = None
        self._stats: dict[str, Any] = {"requests": 0, "retries": 0, "malformed_retries": 0, "descriptions": 0,
                                       "domains": 0, "errors": 0, "total_latency_s": 0.0, "prompt_tokens": 0,
                                       "completion_tokens": 0}

    # -- key and client ---------------------------------------------------------------------
    @staticmethod
    def _api_key() -> str | None:
        return _api_key()

    def require_api_key(self) -> None:
        """Raise JudgeError when ``GROQ_API_KEY`` is not set (the key itself is never shown)."""
        require_api_key()

    def _client(self):
        self.require_api_key()
        key = self._api_key()
        base_url = self.base_url or os.environ.get(BASE_URL_ENV) or None
        ident = (hashlib.sha256(key.encode()).hexdigest(), base_url)
        if self._client_obj is None or self._client_for != ident:
            import groq  # lazy: keeps `import domain_eval.judges` light

            self._client_obj = groq.Groq(api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout)
            self._client_for = ident
        return self._client_obj

    def _redact(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key else text

    # -- HTTP with retries ------------------------------------------------------------------
    def _delay(self, attempt: int, headers: Any) -> float:
        """Backoff before retry number ``attempt + 1``: ``retry-after`` when the server sent one."""
        if headers is not None:
            for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
                raw = headers.get(name)
                if raw is None:
                    continue
                try:
                    value = float(raw) * scale
                except (TypeError, ValueError):
                    continue  # an HTTP-date: fall back to exponential backoff
                if math.isfinite(value) and value >= 0:
                    return min(value, self.max_retry_after)
        return min(self.max_backoff, self.backoff_base * (2 ** attempt))

    @staticmethod
    def _error_info(exc: Any) -> tuple[str | None, str]:
        body = getattr(exc, "body", None)
        err = body.get("error", body) if isinstance(body, dict) else None
        code = err.get("code") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        return (str(code) if code else None), str(message or getattr(exc, "message", "") or exc)

    def _complete(self, description: str, domains: list[str]) -> str | None:
        """Send one judging request (with transport retries) and return the reply content."""
        import groq

        client = self._client()
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(
                description=description, domains_json=json.dumps(domains, ensure_ascii=False))},
        ]
        extra: dict[str, Any] = {}
        if self.max_completion_tokens:
            extra["max_completion_tokens"] = self.max_completion_tokens
        last = ""
        for attempt in range(self.max_attempts):
            t0 = time.perf_counter()
            self._stats["requests"] += 1
            headers = None
            try:
                # The raw response: the body is parsed and checked here (_completion_content), so a
                # 200 whose body is not a chat completion is a malformed reply, not a crash.
                raw = client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, **_REQUEST_PARAMS, **extra)
            except groq.APIStatusError as exc:
                self._stats["total_latency_s"] += time.perf_counter() - t0
                status = exc.status_code
                code, message = self._error_info(exc)
                message = self._redact(message)
                if status == 400 and (code == "model_decommissioned" or "decommissioned" in message.lower()):
                    raise JudgeError(
                        f"Groq model {self.model!r} has been decommissioned ({message}). Choose another model with "
                        f"--judge-model, e.g. --judge-model {DEFAULT_MODEL} (the default)."
                    ) from None
                if status == 404 and code in ("model_not_found", None) and "model" in message.lower():
                    raise JudgeError(
                        f"Groq does not know the model {self.model!r} ({message}). Choose another model with "
                        f"--judge-model, e.g. --judge-model {DEFAULT_MODEL} (the default)."
                    ) from None
                if status in (401, 403):
                    raise JudgeError(
                        f"Groq rejected the request with HTTP {status} ({message}): check the key in "
                        f"{API_KEY_ENV}, or use the offline judge: --judge heuristic"
                    ) from None
                if status == 400 and code == "json_validate_failed":
                    raise _Malformed(f"the model's output failed JSON validation ({message})") from None
                last = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
                if status != 429 and status < 500:
                    raise _RequestFailed(last) from None  # other 4xx: not retried
                headers = exc.response.headers
            except groq.APIConnectionError as exc:  # includes timeouts
                self._stats["total_latency_s"] += time.perf_counter() - t0
                last = self._redact(f"{type(exc).__name__}: {exc}")
            else:
                self._stats["total_latency_s"] += time.perf_counter() - t0
                return self._completion_content(raw.http_response)
            if attempt + 1 < self.max_attempts:
                delay = self._delay(attempt, headers)
                self._stats["retries"] += 1
                log.info("groq judge: %s; retry %d/%d in %.2fs", last, attempt + 1, self.max_attempts - 1, delay)
                self._sleep(delay)
        raise _RequestFailed(f"{last} (gave up after {self.max_attempts} attempts)")

    def _completion_content(self, response: Any) -> str | None:
        """The message content of a successful HTTP reply; :class:`_Malformed` when the body is
        not a chat completion (not JSON, no ``choices``, no message, non-string content)."""
        status = response.status_code
        try:
            data = json.loads(response.content)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            ctype = response.headers.get("content-type", "no content-type").split(";")[0].strip()
            where = f": {exc.msg} at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
            raise _Malformed(f"HTTP {status} reply body is not valid JSON ({ctype}{where})") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise _Malformed(f'HTTP {status} reply is not a chat completion (no "choices" list)')
        usage = data.get("usage")
        if isinstance(usage, dict):
            for field in ("prompt_tokens", "completion_tokens"):
                n = usage.get(field)
                if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                    self._stats[field] += n
        if not data["choices"]:
            raise _Malformed("reply has no choices")
        choice = data["choices"][0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _Malformed(f"HTTP {status} reply is not a chat completion (choices[0] has no message)")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise _Malformed(f"HTTP {status} reply is not a chat completion (message content is not a string)")
        if choice.get("finish_reason") == "length":
            log.info("groq judge: reply truncated (finish_reason=length)")
        return content

    # -- judging ----------------------------------------------------------------------------
    def score(self, description: str, domains: list[str]) -> JudgeResult:
        domains = list(domains)
        ident = {"name": self.name, "model": self.model, "version": self.version}
        if not domains:
            return JudgeResult.build(description, [], ident)
        self._stats["descriptions"] += 1
        # One entry per distinct domain (matched case-insensitively) in the request.
        unique: dict[str, str] = {}
        for d in domains:
            unique.setdefault(_key(d), str(d).strip())
        pending = list(unique.values())
        done: dict[str, DomainScore] = {}
        errors: dict[str, str] = {}
        for attempt in range(1 + max(0, self.malformed_retries)):
            try:
                content = self._complete(description, pending)
                good, bad = parse_reply(content, pending)
            except _Malformed as exc:
                good, bad = {}, {d: str(exc) for d in pending}
            except _RequestFailed as exc:
                errors.update({d: f"judge request failed: {exc}" for d in pending})
                pending = []
                break
            done.update(good)
            if not bad:
                pending = []
                break
            pending = [d for d in pending if d in bad]
            if attempt < self.malformed_retries:
                self._stats["malformed_retries"] += 1
                log.info("groq judge: malformed reply for %d domain(s) (%s); retrying once",
                         len(pending), self._redact(next(iter(bad.values()))))
            else:
                errors.update({d: f"malformed judge reply after {attempt + 1} attempts: {bad[d]}" for d in pending})
        scores: list[DomainScore] = []
        for d in domains:
            canon = unique[_key(d)]
            if canon in done:
                s = done[canon]
                scores.append(DomainScore(d, dict(s.criteria or {}), s.overall, None, s.rationale))
            else:
                scores.append(DomainScore.failed(d, self._redact(errors.get(canon, "not judged"))))
        self._stats["domains"] += len(domains)
        self._stats["errors"] += sum(1 for s in scores if s.error)
        return JudgeResult.build(description, scores, ident)

    def stats(self) -> dict[str, Any]:
        s = dict(self._stats)
        s["total_latency_s"] = round(s["total_latency_s"], 6)
        s["mean_latency_s"] = round(s["total_latency_s"] / s["requests"], 6) if s["requests"] else None
        s.update(cache_hits=0, cache_misses=0, model=self.model)
        return s
