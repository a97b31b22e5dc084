"""The opt-in LLM moderation layer (--safety groq) against a real local HTTP server
(tests/groq_stub.py); the groq client is not patched."""
from __future__ import annotations


import pytest

from domain_eval.safety import SafetyFilter
from domain_eval.safety_llm import GroqModerator, ModerationError, build_prompt, parse_reply
from tests.groq_stub import ChatCompletionsStub, chat_completion, error_response, raw_body

CATEGORIES = {"gambling": "Gambling and betting", "drugs": "Illegal drugs", "wildlife": "Illegal wildlife trade"}
SAFE_TEXT = "family bakery with sourdough and cinnamon rolls"


def moderator(stub: ChatCompletionsStub, **kw) -> GroqModerator:
    return GroqModerator(CATEGORIES, base_url=stub.base_url, timeout=2.0, **kw)


def test_prompt_lists_the_policy_categories_and_the_text() -> None:
    prompt = build_prompt("buy snow ❄️ tonight", CATEGORIES)
    assert "S1: Gambling and betting (gambling)." in prompt and "S3: Illegal wildlife trade (wildlife)." in prompt
    assert "User: buy snow ❄️ tonight" in prompt


@pytest.mark.parametrize("reply, expected", [("safe", (False, [])), ("unsafe\nS2", (True, ["drugs"])),
                                             ("unsafe\nS3,S1", (True, ["wildlife", "gambling"]))])
def test_parse_reply_reads_the_guard_format(reply, expected) -> None:
    assert parse_reply(reply, CATEGORIES) == expected


@pytest.mark.parametrize("reply", ["", None, "maybe", "unsafe", "unsafe\nS9", "I cannot help with that"])
def test_parse_reply_refuses_anything_else(reply) -> None:
    with pytest.raises(ModerationError):
        parse_reply(reply, CATEGORIES)


def test_unsafe_reply_blocks_with_the_category_and_says_which_layer(api_key) -> None:
    with ChatCompletionsStub([chat_completion("unsafe\nS2")]) as stub:
        verdict = moderator(stub).check("party favours for the weekend, dm the plug")
    assert verdict.blocked and verdict.category == "drugs" and verdict.layer == "moderation"
    sent = stub.chat_requests[0].json
    assert sent["model"] == "meta-llama/llama-guard-4-12b" and sent["temperature"] == 0


def test_it_runs_after_the_local_layers_and_only_when_they_allow(api_key) -> None:
    with ChatCompletionsStub(default=chat_completion("safe")) as stub:
        layered = SafetyFilter(moderator=moderator(stub))
        assert layered.check("Online casino with live roulette").layer == "rules"
        assert stub.chat_requests == []  # the rules decided: no request
        verdict = layered.check(SAFE_TEXT)
    assert not verdict.blocked and "says safe" in verdict.reason and len(stub.chat_requests) == 1
    assert layered.version.endswith("groq:meta-llama/llama-guard-4-12b:prompt1")


def test_429_with_retry_after_is_retried_then_answered(api_key) -> None:
    with ChatCompletionsStub([error_response(429, "slow down", code="rate_limit_exceeded",
                                             headers={"retry-after": "0"}),
                              error_response(503, "busy"), chat_completion("unsafe\nS1")]) as stub:
        verdict = moderator(stub).check("sportsbook with live odds")
    assert verdict.blocked and verdict.category == "gambling" and len(stub.chat_requests) == 3


def test_persistent_5xx_is_an_error_not_an_allow(api_key) -> None:
    with ChatCompletionsStub(default=error_response(500, "down", headers={"retry-after": "0"})) as stub:
        with pytest.raises(ModerationError, match="HTTP 500"):
            moderator(stub, max_retries=2).check(SAFE_TEXT)
    assert len(stub.chat_requests) == 3


@pytest.mark.parametrize("body", [raw_body("<html>busy</html>", content_type="text/html"),
                                  chat_completion("The text seems fine to me."), chat_completion(None)])
def test_malformed_replies_are_errors(api_key, body) -> None:
    with ChatCompletionsStub([body]) as stub:
        with pytest.raises(ModerationError):
            moderator(stub).check(SAFE_TEXT)


def test_timeout_is_an_error(api_key) -> None:
    slow = chat_completion("safe")
    slow.delay_s = 3.0
    with ChatCompletionsStub(default=slow) as stub:
        with pytest.raises(ModerationError, match="Timeout"):
            moderator(stub, max_retries=0).check(SAFE_TEXT)


def test_missing_key_is_an_error_before_any_request(monkeypatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with ChatCompletionsStub() as stub:
        with pytest.raises(ModerationError, match="GROQ_API_KEY"):
            moderator(stub).check(SAFE_TEXT)
    assert stub.requests == []


def test_the_key_never_appears_in_an_error(api_key) -> None:
    echo = error_response(400, f"bad key {api_key} rejected")
    with ChatCompletionsStub([echo]) as stub:
        with pytest.raises(ModerationError) as info:
            moderator(stub).check(SAFE_TEXT)
    assert api_key not in str(info.value) and "***" in str(info.value)
