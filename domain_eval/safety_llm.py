"""Opt-in LLM moderation: the safety filter's third layer (``--safety groq``).

A Llama Guard-style prompt lists the policy's categories and asks for ``safe`` or
``unsafe`` plus the violated category codes. It runs only on texts the local layers
(rules, classifier) allowed, so it adds recall for what they miss and never unblocks.

Never silent: a missing key, an HTTP error that survives the client's retries, or a reply
that is not in the expected form raises :class:`ModerationError`; the caller turns that into
a case error, never into "allowed". Transport retries (429 with ``retry-after``, 5xx,
connection errors, with backoff) are the ``groq`` client's own. The API key is read from
``GROQ_API_KEY`` only when a request is sent, and is never stored or printed.
"""
from __future__ import annotations

import os
import re

from domain_eval.safety import SafetyVerdict

__all__ = ["DEFAULT_MODEL", "GroqModerator", "Moderator", "ModerationError", "build_prompt", "parse_reply"]

DEFAULT_MODEL = "meta-llama/llama-guard-4-12b"
API_KEY_ENV = "GROQ_API_KEY"
BASE_URL_ENV = "GROQ_BASE_URL"
PROMPT_VERSION = 1

_PROMPT = """Task: Check if there is unsafe content in the 'User' message below according to our safety policy with the below categories. The message is a business description sent to a domain-name suggestion service; it is unsafe when the business it describes offers, sells, promotes or facilitates one of these harms, in any language, slang, euphemism, emoji code or disguised spelling. Organisations that fight or treat a harm, and legal regulated businesses (pharmacies, licensed gun shops, bars, sexual-health clinics), are safe.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

User: {text}

<END CONVERSATION>

Provide your safety assessment for the User message above:
- First line must read 'safe' or 'unsafe'.
- If unsafe, a second line must include a comma-separated list of violated categories."""


class ModerationError(RuntimeError):
    """The moderation layer could not give a verdict (never read as "allowed")."""


class Moderator:
    """Interface of a moderation layer: ``check(text) -> SafetyVerdict`` and a ``version``."""

    version: str

    def check(self, text: str) -> SafetyVerdict:  # pragma: no cover - interface
        raise NotImplementedError


def _codes(categories: dict[str, str]) -> dict[str, str]:
    return {f"S{i}": name for i, name in enumerate(categories, 1)}


def build_prompt(text: str, categories: dict[str, str]) -> str:
    """The moderation prompt for ``text``; ``categories`` maps policy name -> description."""
    lines = "\n".join(f"{code}: {categories[name]} ({name})." for code, name in _codes(categories).items())
    return _PROMPT.format(categories=lines, text=text)


def parse_reply(content: object, categories: dict[str, str]) -> tuple[bool, list[str]]:
    """(unsafe, policy categories) from a reply; ModerationError when it is not in the asked form."""
    if not isinstance(content, str) or not content.strip():
        raise ModerationError("the moderation model sent an empty reply")
    lines = [line.strip() for line in content.strip().splitlines() if line.strip()]
    head = lines[0].lower().rstrip(".")
    if head == "safe":
        return False, []
    if head != "unsafe":
        raise ModerationError(f"the moderation model's first line is neither 'safe' nor 'unsafe': {lines[0][:80]!r}")
    codes = _codes(categories)
    found = re.findall(r"S\d+", lines[1]) if len(lines) > 1 else []
    unknown = [c for c in found if c not in codes]
    if not found or unknown:
        raise ModerationError("the moderation model said 'unsafe' without known category codes "
                              f"({lines[1][:80] if len(lines) > 1 else 'no second line'!r})")
    return True, [codes[c] for c in found]


class GroqModerator(Moderator):
    """Moderation through a Groq-hosted guard model (default :data:`DEFAULT_MODEL`)."""

    def __init__(self, categories: dict[str, str], model: str | None = None, *, base_url: str | None = None,
                 timeout: float = 30.0, max_retries: int = 3) -> None:
        self.categories = dict(categories)
        self.model = model or DEFAULT_MODEL
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.version = f"groq:{self.model}:prompt{PROMPT_VERSION}"
        self._client = None

    @staticmethod
    def require_api_key() -> None:
        if not (os.environ.get(API_KEY_ENV) or "").strip():
            raise ModerationError(f"--safety groq needs an API key in {API_KEY_ENV} (it is read from the "
                                  "environment only); or drop --safety groq to use the local layers alone")

    def _groq(self):
        self.require_api_key()
        if self._client is None:
            import groq  # lazy: the local layers never need it

            self._client = groq.Groq(api_key=os.environ[API_KEY_ENV].strip(),
                                     base_url=self.base_url or os.environ.get(BASE_URL_ENV) or None,
                                     max_retries=self.max_retries, timeout=self.timeout)
        return self._client

    def check(self, text: str) -> SafetyVerdict:
        import groq

        client = self._groq()
        key = os.environ.get(API_KEY_ENV, "")
        try:
            reply = client.chat.completions.create(
                model=self.model, temperature=0, max_completion_tokens=20,
                messages=[{"role": "user", "content": build_prompt(text, self.categories)}])
            content = reply.choices[0].message.content if reply.choices else None
        except groq.APIStatusError as exc:
            message = str(exc).replace(key, "***") if key else str(exc)
            raise ModerationError(f"moderation request failed: HTTP {exc.status_code}: {message[:200]}") from None
        except groq.APIConnectionError as exc:
            raise ModerationError(f"moderation request failed: {type(exc).__name__}: {exc}") from None
        except (AttributeError, TypeError, ValueError) as exc:  # a 200 that is not a chat completion
            raise ModerationError(f"moderation reply is not a chat completion ({type(exc).__name__})") from None
        unsafe, found = parse_reply(content, self.categories)
        if not unsafe:
            return SafetyVerdict(False, None, f"allowed: moderation model {self.model} says safe", None)
        category = found[0]
        return SafetyVerdict(True, category,
                             f"blocked: {category} ({self.categories[category]}): moderation model {self.model} "
                             f"says unsafe ({', '.join(found)})", None, None, layer="moderation")
