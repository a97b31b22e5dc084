"""The ``openai`` backend against a misbehaving protocol stub on 127.0.0.1 (a real HTTP server, the
real client): retries with backoff and retry-after, timeouts, malformed answers and failed
requests become case errors with nothing invented; the API key is sent and never written; the
client stays light (no torch); and the prompt it renders equals the tokenizer's."""
from __future__ import annotations

import json
import shutil
import socket
import textwrap
import time
from pathlib import Path

import pytest

from domain_eval.config import EvalOptions
from domain_eval.openai_backend import ClientConfig, OpenAIClient, RequestFailed, parse_model_map, retry_after_seconds
from tests.groq_stub import StubResponse, error_response, raw_body
from tests.openai_stub import CompletionsStub, completion

CASES = """
    defaults: {min_valid: 1, min_score: 1.0}
    cases:
      - {id: c-coffee, description: "coffee business"}
      - {id: c-yoga, description: "yoga business"}
      - {id: c-law, description: "law business"}
      - {id: c-tea, description: "tea business"}
    """


def _answer_by_word(rules: dict[str, StubResponse]):
    """Reply by the description's first word (coffee, yoga...): a scripted reply, else two names."""

    def respond(request):
        prompt = request.json["prompt"]
        word = prompt.split("for this business: ", 1)[1].split()[0]
        return rules.get(word) or completion(f"{word}.com\nget{word}.io\n", model=request.json["model"])

    return respond


@pytest.fixture()
def project(pytester: pytest.Pytester, tiny_base: Path) -> pytest.Pytester:
    cases = pytester.path / "cases"
    cases.mkdir()
    (cases / "normal.yaml").write_text(textwrap.dedent(CASES))
    pytester.makeini(f"""
        [pytest]
        testpaths = cases
        domain_eval_cases = cases
        domain_eval_base = {tiny_base}
        domain_eval_max_new_tokens = 16
        """)
    pytester.makeconftest("""
        import sys
        from pathlib import Path

        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic-lexical")

        def pytest_sessionfinish(session):
            name = getattr(session.config, "workerinput", {}).get("workerid", "controller")
            Path(f"torch-{name}.txt").write_text(str("torch" in sys.modules))
        """)
    return pytester


def _rows(root: Path) -> dict[str, dict]:
    lines = (root / "results" / "latest" / "cases.jsonl").read_text().splitlines()
    return {r["key"]: r for r in map(json.loads, filter(None, lines))}


def _run(project: pytest.Pytester, stub: CompletionsStub, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("--model", "base", "--backend", "openai", "--backend-url", stub.url, *args)


# ---------------------------------------------------------------- the client alone


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(later) <= 31


def test_429_is_retried_honouring_retry_after_then_succeeds() -> None:
    replies = iter([error_response(429, "slow down", headers={"retry-after": "0.3"})] * 2)
    with CompletionsStub(lambda r: next(replies, completion("ok.com\n"))) as stub:
        waits: list[float] = []
        client = OpenAIClient(ClientConfig(stub.url, max_retries=3), sleep=waits.append)
        answer = client.complete("base", "p", 8, 0.0, 1.0, None)
    assert answer.text == "ok.com\n" and waits == [0.3, 0.3]
    assert client.counts["retries"] == 2 and client.counts["requests"] == 3 and client.counts["failed"] == 0


def test_5xx_backs_off_exponentially_then_gives_up() -> None:
    with CompletionsStub(lambda r: error_response(503, "overloaded")) as stub:
        waits: list[float] = []
        client = OpenAIClient(ClientConfig(stub.url, max_retries=3, backoff=1.0, max_backoff=3.0), sleep=waits.append)
        with pytest.raises(RequestFailed, match=r"HTTP 503: overloaded \(gave up after 4 attempts\)"):
            client.complete("base", "p", 8, 0.0, 1.0, None)
    assert len(stub.completions()) == 4
    # Full jitter in [0.5, 1] x min(max_backoff, backoff * 2^attempt).
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 1.5 <= waits[2] <= 3.0


def test_client_errors_and_malformed_answers_are_not_retried() -> None:
    for reply, message in [(error_response(400, "bad prompt"), "HTTP 400: bad prompt"),
                           (raw_body("<html>oops</html>"), "malformed answer"),
                           ({"choices": []}, "malformed answer")]:
        with CompletionsStub(lambda r, reply=reply: reply) as stub:
            client = OpenAIClient(ClientConfig(stub.url, max_retries=3), sleep=lambda s: None)
            with pytest.raises(RequestFailed, match=message):
                client.complete("base", "p", 8, 0.0, 1.0, None)
        assert len(stub.completions()) == 1


def test_a_timeout_is_retried_then_reported() -> None:
    with CompletionsStub(lambda r: StubResponse(200, completion("late.com"), delay_s=1.5)) as stub:
        client = OpenAIClient(ClientConfig(stub.url, timeout=0.3, max_retries=1), sleep=lambda s: None)
        with pytest.raises(RequestFailed, match=r"no answer within 0.3 s \(gave up after 2 attempts\)"):
            client.complete("base", "p", 8, 0.0, 1.0, None)


def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIClient(ClientConfig(f"http://127.0.0.1:{port}/v1", max_retries=2), sleep=lambda s: None)
    with pytest.raises(RequestFailed, match="ConnectError.*gave up after 3 attempts"):
        client.models()


def test_model_map_and_option_checks() -> None:
    assert parse_model_map(["v3=lora-v3", "base=/models/smol"]) == {"v3": "lora-v3", "base": "/models/smol"}
    with pytest.raises(ValueError, match="'v3' is not MODEL=SERVED_NAME"):
        parse_model_map(["v3"])
    from domain_eval.config import ConfigError

    for kwargs, message in [({"backend": "openai"}, "--backend openai needs --backend-url"),
                            ({"backend": "vllm"}, "--backend must be local or openai"),
                            ({"backend": "openai", "backend_url": "http://h/v1", "backend_concurrency": 0}, "--backend-concurrency"),
                            ({"backend": "openai", "backend_url": "http://h/v1", "backend_api_key": "sk-abc.def"},
                             "takes the NAME of an environment variable")]:
        with pytest.raises(ConfigError, match=message):
            EvalOptions(**kwargs)


# ---------------------------------------------------------------- through the plugin


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_failed_requests_are_case_errors_and_the_others_are_scored(project: pytest.Pytester, xdist: list[str]) -> None:
    rules = {"law": error_response(500, "kaboom"), "yoga": raw_body("not json"),
             "tea": StubResponse(200, completion("late.com"), delay_s=2.0)}
    with CompletionsStub(_answer_by_word(rules)) as stub:
        result = _run(project, stub, "--backend-retries", "1", "--backend-timeout", "0.5", *xdist)
    rows = _rows(project.path)
    assert rows["c-coffee[base]"]["outcome"] == "passed" and rows["c-coffee[base]"]["score"] is not None
    assert [d["domain"] for d in rows["c-coffee[base]"]["samples"][0]["domains"]] == ["coffee.com", "getcoffee.io"]
    for key, message in [("c-law[base]", "HTTP 500: kaboom (gave up after 2 attempts)"),
                         ("c-yoga[base]", "malformed answer (not JSON)"),
                         ("c-tea[base]", "no answer within 0.5 s (gave up after 2 attempts)")]:
        row = rows[key]
        assert row["outcome"] == "error" and row["score"] is None and not row["samples"], key
        assert any(message in f for f in row["failures"]), row["failures"]
    result.assert_outcomes(passed=1, errors=3)
    # Retried exactly as configured: law and tea twice each, yoga (malformed) once.
    words = [r.json["prompt"].split("business: ")[1].split()[0] for r in stub.completions()]
    assert sorted(words) == ["coffee", "law", "law", "tea", "tea", "yoga"]
    # Light clients: no process of the run imported torch.
    flags = {p.name: p.read_text() for p in project.path.glob("torch-*.txt")}
    assert flags and set(flags.values()) == {"False"}, flags


def test_prompts_are_the_chat_template_and_greedy_is_temperature_zero(project: pytest.Pytester, tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    from domain_eval.prompts import build_prompt

    with CompletionsStub(_answer_by_word({})) as stub:
        _run(project, stub, "-k", "c-coffee").assert_outcomes(passed=1)
    body = stub.completions()[0].json
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    assert body["prompt"] == build_prompt(tokenizer, "coffee business", 5)
    assert body["temperature"] == 0 and body["max_tokens"] == 16 and body["model"] == "base"
    assert body["add_special_tokens"] is False and "seed" not in body


def test_the_run_records_the_server_and_the_baseline_depends_on_it(project: pytest.Pytester) -> None:
    with CompletionsStub(_answer_by_word({})) as stub:
        _run(project, stub, "--write-baseline", "base.json").assert_outcomes(passed=4)
        run = json.loads((project.path / "results" / "latest" / "run.json").read_text())
        assert run["backend"]["name"] == "openai" and run["backend"]["served"]["server_models"] == ["a1", "a2", "base"]
        assert run["compat"]["backend"] == "openai" and run["compat"]["served"]["models"] == {"base": "base"}
        assert run["compat"]["quant"] is None  # what the server runs is not guessed from local options
        # The same cases generated locally are not comparable with that baseline.
        result = project.runpytest_subprocess("--model", "base", "--quant", "none", "--baseline", "base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*backend: baseline 'openai', this run 'local'*"])


def test_the_api_key_is_sent_and_never_written(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"sk-test-{time.time_ns()}"
    monkeypatch.setenv("MY_SERVER_KEY", key)
    with CompletionsStub(_answer_by_word({})) as stub:
        result = _run(project, stub, "--backend-api-key", "MY_SERVER_KEY", "--write-baseline", "out/base.json", "-n", "2")
    result.assert_outcomes(passed=4)
    assert {r.headers.get("authorization") for r in stub.requests} == {f"Bearer {key}"}
    written = [p for p in project.path.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written) and any(p.name == "base.json" for p in written)
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    assert key not in result.stdout.str() + result.stderr.str()
    # Passing the key itself is refused, without echoing it.
    result = _run(project, stub, "--backend-api-key", key)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and key not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*--backend-api-key takes the NAME of an environment variable*"])


def test_server_problems_are_usage_errors_before_any_case_runs(project: pytest.Pytester) -> None:
    with CompletionsStub(_answer_by_word({}), models=("base",)) as stub:
        result = project.runpytest_subprocess("--model", "base,a2", "--backend", "openai", "--backend-url", stub.url)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--model a2: the server at * does not serve 'a2' (it serves: base)*"])
        assert not stub.completions()
        project.makeini(project.path.joinpath("tox.ini").read_text() + "\ndomain_eval_backend_models = a2=base\n")
        project.runpytest_subprocess("--model", "a2", "--backend", "openai", "--backend-url", stub.url).assert_outcomes(passed=4)
        assert {r.json["model"] for r in stub.completions()} == {"base"}
    result = _run(project, stub, "--backend-retries", "0")  # the stub has stopped: nothing listens
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--backend-url {stub.url}: GET models: ConnectError*"])


# ---------------------------------------------------------------- the prompt without a tokenizer


def test_rendered_chat_template_equals_the_tokenizers(tiny_base: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from domain_eval.chat_template import ChatTemplateError, for_base, from_folder
    from domain_eval.prompts import build_prompt, render_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base))
    template = for_base(str(tiny_base))
    for description, n in [("coffee business", 5), ("Bistrot familial à Lyon,  près de la gare", 3), ("寿司 店", 1)]:
        assert render_prompt(template, description, n) == build_prompt(tokenizer, description, n)
    # A template that uses the special tokens and trims blocks, like many on the hub.
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}\n  {{ m['role'] }}: {{ m['content'] | trim }}\n"
                               "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    tokenizer.save_pretrained(tmp_path / "tok")
    assert render_prompt(from_folder(tmp_path / "tok"), "tea", 2) == build_prompt(tokenizer, "tea", 2)
    shutil.rmtree(tmp_path / "tok")
    (tmp_path / "tok").mkdir()
    with pytest.raises(ChatTemplateError, match="no chat template"):
        from_folder(tmp_path / "tok")


@pytest.mark.slow
def test_embedded_base_prompt_from_its_gguf_equals_the_tokenizers() -> None:
    from domain_eval.chat_template import for_base, from_gguf
    from domain_eval.models import EMBEDDED, _embedded_folder, load_base
    from domain_eval.prompts import build_prompt, render_prompt

    tokenizer = load_base("smollm2-135m", quant="none").tokenizer
    emb = EMBEDDED["smollm2-135m"]
    for template in (for_base("smollm2-135m"), from_gguf(_embedded_folder(emb) / emb.gguf_file)):
        assert render_prompt(template, "organic coffee shop in downtown Portland", 5) == \
            build_prompt(tokenizer, "organic coffee shop in downtown Portland", 5)


def test_generate_defaults_to_the_best_adapter_and_an_empty_answer_exits_5(tiny_base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from domain_eval.cli import main

    from domain_eval.models import BEST_ADAPTERS, DEFAULT_BASE

    best = BEST_ADAPTERS[DEFAULT_BASE]
    answers = {best: "brewhaven.com\nbeanline.co\n", "base": "Sure! Here are some great ideas for you."}
    with CompletionsStub(lambda r: completion(answers[r.json["model"]]), models=("base", best)) as stub:
        common = ["generate", "coffee business", "--backend", "openai", "--backend-url", stub.url]
        assert main(common) == 0
        out = capsys.readouterr()
        assert "brewhaven.com" in out.out and f"using adapter '{best}', the best shipped one" in out.err
        assert main([*common, "--model", "base", "--json"]) == 5
        out = capsys.readouterr()
        assert json.loads(out.out) == []
        assert "model 'base' gave no valid domain" in out.err and "Sure! Here are some great ideas" in out.err
        # A base no shipped adapter was trained on: a clear error, never a silent bare base.
        assert main([*common, "--base", str(tiny_base)]) == 4
        assert "no shipped adapter was trained on base" in capsys.readouterr().err
    assert [r.json["model"] for r in stub.completions()] == [best, "base"]
