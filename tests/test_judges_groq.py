"""GroqJudge against a real local HTTP server (tests/groq_stub.py); the groq client is not patched."""
from __future__ import annotations

import json
import logging
import re
import time

import pytest

from domain_eval.judges import CRITERIA, JudgeError, check_judge_config, make_judge
from domain_eval.judges.groq import DEFAULT_MODEL, LEGACY_MODEL, GroqJudge, parse_reply
from tests.groq_stub import CHAT_PATH, ChatCompletionsStub, RecordedRequest, chat_completion, error_response, raw_body

DESC = "mobile dog grooming service"
DOMAINS = ["pawsonwheels.com", "groomvan.com", "mobile-dog-grooming-service.net"]


@pytest.fixture
def stub():
    with ChatCompletionsStub() as server:
        yield server


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def requested_domains(request: RecordedRequest) -> list[str]:
    """The JSON array of domains in the prompt (the line that is a JSON array)."""
    for line in request.user_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            return json.loads(line)
    raise AssertionError(f"no domain list in prompt: {request.user_text!r}")


def entry(domain: str, value=7, **over) -> dict:
    item = {"domain": domain, **{c: value for c in CRITERIA}, "overall": value, "rationale": f"about {domain}"}
    item.update(over)
    return item


def good(value=7):
    """A scripted responder that rates every requested domain ``value`` on every criterion."""

    def respond(request: RecordedRequest):
        return chat_completion(json.dumps({"scores": [entry(d, value) for d in requested_domains(request)]}))

    return respond


def judge_for(stub: ChatCompletionsStub, **kw) -> GroqJudge:
    kw.setdefault("sleep", Sleeps())
    return GroqJudge(base_url=stub.base_url, **kw)


# --------------------------------------------------------------------------- happy path
def test_happy_path_one_request_for_all_domains(api_key, stub):
    stub.enqueue(lambda req: chat_completion(json.dumps({"scores": [
        entry("pawsonwheels.com", 9), entry("groomvan.com", 7),
        entry("mobile-dog-grooming-service.net", 3, technical_quality=2.5, overall=2.9)]})))
    judge = judge_for(stub)
    result = judge.score(DESC, DOMAINS)

    assert [s.domain for s in result.scores] == DOMAINS
    assert [s.overall for s in result.scores] == [9.0, 7.0, 2.9]
    assert result.scores[2].criteria["technical_quality"] == 2.5
    assert result.errors == 0 and result.best == 9.0 and result.mean == pytest.approx(6.3, abs=0.01)
    assert result.judge == {"name": "groq", "model": DEFAULT_MODEL, "version": judge.version}
    assert result.scores[0].rationale == "about pawsonwheels.com"

    (req,) = stub.requests
    assert req.method == "POST" and req.path == CHAT_PATH
    assert req.headers["authorization"] == f"Bearer {api_key}"
    body = req.json
    assert body["model"] == DEFAULT_MODEL
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    assert requested_domains(req) == DOMAINS
    assert DESC in req.user_text
    stats = judge.stats()
    assert stats["requests"] == 1 and stats["retries"] == 0 and stats["errors"] == 0
    assert stats["mean_latency_s"] is not None and stats["mean_latency_s"] >= 0


def test_base_url_from_environment_and_legacy_model(api_key, stub, monkeypatch):
    monkeypatch.setenv("GROQ_BASE_URL", stub.base_url)
    stub.enqueue(good(6))
    judge = make_judge("groq", model=LEGACY_MODEL)
    result = judge.score(DESC, DOMAINS[:1])
    assert result.errors == 0 and result.scores[0].overall == 6.0
    assert stub.requests[0].json["model"] == LEGACY_MODEL
    assert result.judge["model"] == LEGACY_MODEL


def test_empty_domain_list_sends_nothing(api_key, stub):
    result = judge_for(stub).score(DESC, [])
    assert result.scores == [] and result.mean is None and result.best is None and result.errors == 0
    assert stub.requests == []


def test_duplicate_domains_are_judged_once(api_key, stub):
    stub.enqueue(good(8))
    result = judge_for(stub).score(DESC, ["groomvan.com", "GroomVan.com", "groomvan.com"])
    assert requested_domains(stub.requests[0]) == ["groomvan.com"]
    assert [s.domain for s in result.scores] == ["groomvan.com", "GroomVan.com", "groomvan.com"]
    assert all(s.overall == 8.0 for s in result.scores)


# --------------------------------------------------------------------------- malformed replies
def test_malformed_then_good(api_key, stub):
    stub.enqueue(chat_completion('{"scores": [ {"domain": "pawsonwheels.com", "relev'), good(7))
    judge = judge_for(stub)
    result = judge.score(DESC, DOMAINS)
    assert result.errors == 0 and all(s.overall == 7.0 for s in result.scores)
    assert len(stub.requests) == 2
    assert judge.stats()["malformed_retries"] == 1


def test_malformed_twice_is_a_judge_error_never_a_score(api_key, stub):
    stub.enqueue(chat_completion("Sure! Here are my ratings: great names."), chat_completion('{"ratings": []}'))
    judge = judge_for(stub)
    result = judge.score(DESC, DOMAINS)
    assert len(stub.requests) == 2
    assert result.errors == 3 and result.mean is None and result.best is None
    for s in result.scores:
        assert s.criteria is None and s.overall is None
        assert "malformed" in s.error and '"scores" list' in s.error
    assert judge.stats()["errors"] == 3


def test_partial_malformed_retries_only_affected_domains(api_key, stub):
    first = {"scores": [entry("pawsonwheels.com", 9), entry("groomvan.com", 11)]}  # 11 out of range, one missing
    stub.enqueue(chat_completion(json.dumps(first)), good(5))
    result = judge_for(stub).score(DESC, DOMAINS)
    assert result.errors == 0
    assert [s.overall for s in result.scores] == [9.0, 5.0, 5.0]
    assert requested_domains(stub.requests[1]) == ["groomvan.com", "mobile-dog-grooming-service.net"]


def test_reply_with_unknown_domain_is_rejected_whole(api_key, stub):
    bad = {"scores": [entry(d) for d in DOMAINS] + [entry("invented.com")]}
    stub.enqueue(chat_completion(json.dumps(bad)), chat_completion(json.dumps(bad)))
    result = judge_for(stub).score(DESC, DOMAINS)
    assert result.errors == 3
    assert all("not requested" in s.error for s in result.scores)


def test_json_validate_failed_counts_as_malformed(api_key, stub):
    stub.enqueue(error_response(400, "Failed to generate JSON", code="json_validate_failed"), good(6))
    result = judge_for(stub).score(DESC, DOMAINS)
    assert result.errors == 0 and len(stub.requests) == 2


# A 200 whose body is not a chat completion: (response, what the judge error says).
BAD_BODIES = {
    "html": (raw_body("<html><body>upstream busy</body></html>", content_type="text/html"), "not valid JSON (text/html"),
    "plain-text": (raw_body("overloaded, try later", content_type="text/plain"), "not valid JSON (text/plain"),
    "truncated-json": (raw_body('{"id": "chatcmpl-1", "choices": [{"message": {"content": "{\\"sco'),
                       "not valid JSON (application/json: Unterminated string"),
    "empty": (raw_body(""), "not valid JSON"),
    "not-utf8": (raw_body(b"\x80\x81\xfe garbage"), "not valid JSON"),
    "json-object": (raw_body('{"status": "ok"}'), 'not a chat completion (no "choices" list)'),
    "json-list": (raw_body("[1, 2, 3]"), 'not a chat completion (no "choices" list)'),
    "choice-not-object": (raw_body('{"choices": ["x"]}'), "choices[0] has no message"),
    "content-not-string": (raw_body('{"choices": [{"message": {"role": "assistant", "content": 7}}]}'),
                           "content is not a string"),
}


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_persistent_bad_200_body_is_a_judge_error_after_one_retry(api_key, stub, kind):
    response, reason = BAD_BODIES[kind]
    stub.default = response  # every request gets the bad body
    judge = judge_for(stub)
    result = judge.score(DESC, DOMAINS)  # no exception escapes
    assert len(stub.chat_requests) == 2  # the first request and one malformed-reply retry
    assert [s.domain for s in result.scores] == DOMAINS
    assert result.errors == 3 and result.mean is None and result.best is None
    for s in result.scores:
        assert s.criteria is None and s.overall is None
        assert s.error.startswith("malformed judge reply after 2 attempts: HTTP 200 reply"), s.error
        assert reason in s.error, s.error
    stats = judge.stats()
    assert stats["malformed_retries"] == 1 and stats["retries"] == 0 and stats["errors"] == 3


def test_bad_200_body_retries_follow_malformed_retries(api_key, stub):
    stub.default = BAD_BODIES["html"][0]
    result = judge_for(stub, malformed_retries=0).score(DESC, DOMAINS[:1])
    assert result.errors == 1 and len(stub.chat_requests) == 1
    assert "after 1 attempts" in result.scores[0].error


@pytest.mark.parametrize("kind", ["html", "truncated-json", "json-object", "content-not-string"])
def test_bad_200_body_once_then_good_is_scored(api_key, stub, kind):
    stub.enqueue(BAD_BODIES[kind][0], good(7))
    judge = judge_for(stub)
    result = judge.score(DESC, DOMAINS)
    assert result.errors == 0 and [s.overall for s in result.scores] == [7.0, 7.0, 7.0]
    assert len(stub.chat_requests) == 2 and requested_domains(stub.chat_requests[1]) == DOMAINS
    assert judge.stats()["malformed_retries"] == 1
    assert judge.stats()["prompt_tokens"] == 100  # usage is counted from the good reply only


def test_parse_reply_rejects_non_text_content():
    good_, bad = parse_reply(7, ["a.com"])  # type: ignore[arg-type]
    assert good_ == {} and "not text" in bad["a.com"]


@pytest.mark.parametrize("item, reason", [
    (entry("a.com", relevance=True), "not a number"),
    (entry("a.com", relevance="8"), "not a number"),
    (entry("a.com", creativity=0), "out of range"),
    (entry("a.com", creativity=float("nan")), "not a number"),
    ({k: v for k, v in entry("a.com").items() if k != "brandability"}, "not a number"),
    (entry("a.com", rationale=["x"]), "rationale"),
])
def test_parse_reply_is_strict(item, reason):
    good_, bad = parse_reply(json.dumps({"scores": [item]}), ["a.com"])
    assert good_ == {} and reason in bad["a.com"]


def test_parse_reply_duplicates_and_case():
    reply = json.dumps({"scores": [entry("A.com."), entry("b.com"), entry("b.com")]})
    good_, bad = parse_reply(reply, ["a.com", "b.com"])
    assert set(good_) == {"a.com"} and "2 times" in bad["b.com"]


# --------------------------------------------------------------------------- HTTP errors
def test_429_honours_retry_after(api_key, stub):
    stub.enqueue(error_response(429, "Rate limit reached", type="requests", code="rate_limit_exceeded",
                                headers={"retry-after": "3"}), good(7))
    sleeps = Sleeps()
    judge = judge_for(stub, sleep=sleeps)
    result = judge.score(DESC, DOMAINS)
    assert result.errors == 0
    assert sleeps == [3.0]
    assert judge.stats()["retries"] == 1 and judge.stats()["requests"] == 2


def test_retry_really_waits_with_default_sleep(api_key, stub):
    stub.enqueue(error_response(429, "slow down", headers={"retry-after-ms": "150"}), good(7))
    judge = GroqJudge(base_url=stub.base_url)  # real time.sleep
    t0 = time.perf_counter()
    result = judge.score(DESC, DOMAINS[:1])
    assert result.errors == 0
    assert stub.requests[1].time - stub.requests[0].time >= 0.14
    assert time.perf_counter() - t0 < 5


def test_500_500_then_success_uses_exponential_backoff(api_key, stub):
    stub.enqueue(error_response(500, "Internal Server Error", type="internal_server_error"),
                 error_response(503, "Service Unavailable", type="internal_server_error"), good(8))
    sleeps = Sleeps()
    judge = judge_for(stub, sleep=sleeps, backoff_base=0.25, max_backoff=8.0)
    result = judge.score(DESC, DOMAINS)
    assert result.errors == 0 and result.mean == 8.0
    assert sleeps == [0.25, 0.5]
    assert len(stub.requests) == 3 and judge.stats()["retries"] == 2


def test_persistent_5xx_gives_bounded_attempts_and_judge_errors(api_key, stub):
    stub.default = error_response(502, "Bad Gateway", type="internal_server_error")
    sleeps = Sleeps()
    judge = judge_for(stub, sleep=sleeps, backoff_base=1.0, max_backoff=2.5, max_attempts=4)
    result = judge.score(DESC, DOMAINS)
    assert len(stub.requests) == 4
    assert sleeps == [1.0, 2.0, 2.5]
    assert result.errors == 3 and result.mean is None
    assert all(s.overall is None and "HTTP 502" in s.error and "4 attempts" in s.error for s in result.scores)


def test_other_4xx_is_not_retried(api_key, stub):
    stub.enqueue(error_response(413, "Request too large", code="request_too_large"))
    result = judge_for(stub).score(DESC, DOMAINS)
    assert len(stub.requests) == 1
    assert result.errors == 3 and all("HTTP 413" in s.error for s in result.scores)


def test_connection_refused_is_retried_then_a_judge_error(api_key):
    server = ChatCompletionsStub().start()
    base_url = server.base_url
    server.stop()
    sleeps = Sleeps()
    result = GroqJudge(base_url=base_url, sleep=sleeps, max_attempts=2).score(DESC, DOMAINS[:2])
    assert sleeps == [0.5]
    assert result.errors == 2 and all("APIConnectionError" in s.error for s in result.scores)


# --------------------------------------------------------------------------- configuration errors
def test_decommissioned_model_is_a_clear_judge_error(api_key, stub):
    stub.enqueue(error_response(
        400, f"The model `{LEGACY_MODEL}` has been decommissioned and is no longer supported.",
        code="model_decommissioned"))
    judge = judge_for(stub, model=LEGACY_MODEL)
    with pytest.raises(JudgeError) as info:
        judge.score(DESC, DOMAINS)
    msg = str(info.value)
    assert "--judge-model" in msg and DEFAULT_MODEL in msg and LEGACY_MODEL in msg
    assert len(stub.requests) == 1


def test_decommissioned_model_via_cli_exits_2(api_key, stub, monkeypatch, capsys):
    from domain_eval.cli import main

    monkeypatch.setenv("GROQ_BASE_URL", stub.base_url)
    stub.enqueue(error_response(400, "model decommissioned", code="model_decommissioned"))
    rc = main(["judge", DESC, "groomvan.com", "--judge", "groq", "--judge-model", LEGACY_MODEL])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert "--judge-model" in err and DEFAULT_MODEL in err


def test_bad_key_is_a_judge_error_without_the_key(api_key, stub):
    stub.enqueue(error_response(401, "Invalid API Key", code="invalid_api_key"))
    with pytest.raises(JudgeError) as info:
        judge_for(stub).score(DESC, DOMAINS)
    assert "GROQ_API_KEY" in str(info.value) and api_key not in str(info.value)


def test_missing_key(monkeypatch, stub):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(JudgeError, match="--judge heuristic"):
        make_judge("groq")
    with pytest.raises(JudgeError, match="GROQ_API_KEY"):
        GroqJudge(base_url=stub.base_url).score(DESC, DOMAINS)
    assert stub.requests == []


def test_unknown_judge_name():
    with pytest.raises(JudgeError, match="heuristic"):
        make_judge("oracle")


def test_check_judge_config_groq_key(monkeypatch, tmp_path):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(JudgeError, match="GROQ_API_KEY") as info:
        check_judge_config("groq")
    assert "--judge-cache" in str(info.value)
    monkeypatch.setenv("GROQ_API_KEY", "   ")
    with pytest.raises(JudgeError, match="GROQ_API_KEY"):
        check_judge_config(" Groq ")
    check_judge_config("groq", cache_path=tmp_path / "c.sqlite")  # a recorded cache may replay without a key
    assert not (tmp_path / "c.sqlite").exists()  # a check, not a setup
    monkeypatch.setenv("GROQ_API_KEY", "gsk_x")
    check_judge_config("groq")


# --------------------------------------------------------------------------- cache replay
def test_cache_replay_with_server_stopped_and_no_key(api_key, tmp_path, monkeypatch):
    cache = tmp_path / "judge-cache.sqlite"
    with ChatCompletionsStub([good(7)]) as server:
        base_url = server.base_url
        first = make_judge("groq", cache_path=cache, base_url=base_url, sleep=Sleeps())
        recorded = first.score(DESC, DOMAINS)
        assert recorded.errors == 0 and len(server.requests) == 1
        assert first.stats()["cache_misses"] == 3 and first.stats()["cache_writes"] == 3
    # The server is gone (connections are refused) and so is the key: a full hit needs neither.
    monkeypatch.delenv("GROQ_API_KEY")
    replay = make_judge("groq", cache_path=cache, base_url=base_url, sleep=Sleeps())
    result = replay.score(DESC, DOMAINS)
    assert result.to_dict() == recorded.to_dict()
    stats = replay.stats()
    assert stats["cache_hits"] == 3 and stats["cache_misses"] == 0 and stats["requests"] == 0
    # A miss still needs the key ...
    with pytest.raises(JudgeError, match="GROQ_API_KEY"):
        replay.score(DESC, DOMAINS + ["wagwash.com"])
    # ... and with a key but no server it is a judge error for that domain only; hits are served.
    monkeypatch.setenv("GROQ_API_KEY", api_key)
    mixed = make_judge("groq", cache_path=cache, base_url=base_url, sleep=Sleeps(), max_attempts=2)
    result = mixed.score(DESC, DOMAINS + ["wagwash.com"])
    assert [s.error is None for s in result.scores] == [True, True, True, False]
    assert result.mean == 7.0 and result.errors == 1


def test_errors_are_not_cached(api_key, tmp_path):
    cache = tmp_path / "c.sqlite"
    with ChatCompletionsStub([chat_completion("nope"), chat_completion("nope"), good(4)]) as server:
        judge = make_judge("groq", cache_path=cache, base_url=server.base_url, sleep=Sleeps())
        assert judge.score(DESC, DOMAINS[:1]).errors == 1
        again = judge.score(DESC, DOMAINS[:1])
        assert again.errors == 0 and again.mean == 4.0
        assert len(server.requests) == 3
        assert judge.stats()["cache_hits"] == 0


# --------------------------------------------------------------------------- the key never leaks
def test_api_key_never_appears_in_output_logs_results_or_cache(api_key, tmp_path, monkeypatch, capsys, caplog):
    from domain_eval.cli import main

    caplog.set_level(logging.DEBUG)  # groq, httpx and httpcore debug logging included
    cache = tmp_path / "judge-cache.sqlite"
    responses = [
        error_response(429, "rate limited", headers={"retry-after": "0"}),
        error_response(500, "oops", type="internal_server_error"),
        chat_completion("not json"),
        good(7),
        good(6),
    ]
    with ChatCompletionsStub(responses) as server:
        monkeypatch.setenv("GROQ_BASE_URL", server.base_url)
        rc_json = main(["judge", DESC, *DOMAINS, "--judge", "groq", "--judge-cache", str(cache), "--json"])
        rc_table = main(["judge", DESC, "wagwash.com", "--judge", "groq", "--judge-cache", str(cache)])
        assert all(r.headers["authorization"] == f"Bearer {api_key}" for r in server.requests)  # it was used
        assert len(server.requests) == 5
    out, err = capsys.readouterr()
    assert rc_json == 0 and rc_table == 0
    data = json.loads(out[: out.index("\n}\n") + 2])
    assert data["errors"] == 0 and len(data["scores"]) == 3
    assert "wagwash.com" in out
    # an error path that echoes the key back must be redacted
    with ChatCompletionsStub([error_response(422, f"bad request from key {api_key}")]) as server:
        leaky = GroqJudge(base_url=server.base_url).score(DESC, ["x.com"])
    assert leaky.errors == 1 and "***" in leaky.scores[0].error
    blobs = {
        "stdout": out, "stderr": err, "logs": caplog.text,
        "log_args": " ".join(repr(r.args) for r in caplog.records),
        "result": json.dumps(leaky.to_dict()),
    }
    files = sorted(tmp_path.glob("judge-cache.sqlite*"))
    assert files, "the cache was not written"
    for f in files:
        blobs[f.name] = f.read_bytes().decode("latin-1")
    assert caplog.records, "debug logging was not captured"
    for name, text in blobs.items():
        assert api_key not in text, f"API key leaked into {name}"
        assert re.search(r"gsk_TEST_[0-9a-f]{8}", text) is None, f"part of the API key leaked into {name}"


def test_unknown_model_is_a_judge_error(api_key, stub):
    stub.enqueue(error_response(404, "The model `no-such-model` does not exist or you do not have access to it.",
                                code="model_not_found"))
    with pytest.raises(JudgeError, match="--judge-model"):
        judge_for(stub, model="no-such-model").score(DESC, DOMAINS)


def test_cli_exit_code_1_and_error_rows_when_domains_cannot_be_judged(api_key, stub, monkeypatch, capsys):
    from domain_eval.cli import main

    monkeypatch.setenv("GROQ_BASE_URL", stub.base_url)
    stub.enqueue(chat_completion("{}"), chat_completion("{}"))
    rc = main(["judge", DESC, "groomvan.com", "--judge", "groq"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "groomvan.com" in out and "error: malformed judge reply" in out and "mean overall: -" in out
