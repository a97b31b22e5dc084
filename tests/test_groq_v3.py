"""training.groq_v3 against a real local HTTP server that speaks chat-completions.

The real ``groq`` client talks to ``tests.groq_stub`` on 127.0.0.1; nothing is patched.
"""
from __future__ import annotations

import itertools
import json
import re

import pytest

from tests.groq_stub import ChatCompletionsStub, chat_completion, error_response
from training import groq_v3
from training.datasets import load_dataset, load_meta, meta_path_for

SPEC_LINE = re.compile(r"^- row (\d+): category=([^;]+); language=([^;]+); industry=([^-\n]+?) --", re.M)
NO_SAFETY = (lambda text: False, lambda domain: False)


def specs_in(request) -> list[tuple[str, str, str]]:
    return [(c, lang, ind.strip()) for _, c, lang, ind in SPEC_LINE.findall(request.user_text)]


def good_rows(counter=itertools.count(1)):
    """A responder writing one well-formed row per requested spec (unique descriptions)."""

    def respond(request):
        rows = []
        for cat, lang, ind in specs_in(request):
            n = next(counter)
            desc = f"東京の店 番号{n}" if lang == "ja" else f"A friendly family-run {ind} business, branch {n}"
            rows.append({"business_description": desc,
                         "domain_suggestions": [f"brand{n}.com", f"brand{n}.io", f"get-brand{n}.co"],
                         "lang": lang, "category": cat, "industry": ind})
        return chat_completion(json.dumps({"rows": rows}))

    return respond


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "test-key")
    monkeypatch.delenv("GROQ_BASE_URL", raising=False)


def run(stub, tmp_path, **kw):
    kw.setdefault("exclude", [])
    kw.setdefault("safety", NO_SAFETY)
    kw.setdefault("progress", False)
    return groq_v3.generate_v3(base_url=stub.base_url, out_path=tmp_path / "v3.jsonl", **kw)


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(groq_v3.MissingAPIKeyError, match="GROQ_API_KEY"):
        groq_v3.generate_v3(n_rows=3, out_path=tmp_path / "x.jsonl")
    assert groq_v3.main(["--out", str(tmp_path / "x.jsonl"), "--rows", "3"]) == 2
    assert "GROQ_API_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        groq_v3.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--out", "--rows", "--model", "--base-url", "--seed", "--batch-size", "--temperature",
                "--max-requests", "--timeout", "--no-progress", "GROQ_API_KEY"):
        assert opt in out


def test_plan_covers_languages_categories_and_industries():
    specs = groq_v3.plan_specs(290, seed=0)
    assert len(specs) == 290
    langs = {lang: sum(s.lang == lang for s in specs) for lang in ("fr", "de", "es", "it", "ja")}
    assert all(n >= 8 for n in langs.values()), langs
    assert {s.category for s in specs} == {"normal", "short", "long", "technical", "unusual", "ambiguous",
                                           "multilingual"}
    assert len({s.industry for s in specs}) >= 40
    assert groq_v3.plan_specs(290, seed=0) == specs
    assert groq_v3.plan_specs(290, seed=1) != specs


def test_generates_exact_rows_and_request_shape(key, tmp_path):
    with ChatCompletionsStub(default=good_rows(itertools.count(1))) as stub:
        result = run(stub, tmp_path, n_rows=23, batch_size=10, model="my-model", temperature=0.7, seed=5)
    assert len(stub.chat_requests) == 3  # 10 + 10 + 3
    req = stub.chat_requests[0]
    assert req.headers["authorization"] == "Bearer test-key"
    body = req.json
    assert body["model"] == "my-model"
    assert body["temperature"] == 0.7
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system" and "JSON" in body["messages"][0]["content"]
    assert len(specs_in(req)) == 10 and len(specs_in(stub.chat_requests[2])) == 3

    rows = load_dataset(result.out_path)  # validates every line and domain
    assert len(rows) == 23 and result.stats.rows_accepted == 23
    meta = load_meta(meta_path_for(result.out_path), rows)
    assert [m["description"] for m in meta] == [r.description for r in rows]
    planned = groq_v3.plan_specs(23, seed=5)
    assert [(m["category"], m["lang"], m["industry"]) for m in meta] == [
        (s.category, s.lang, s.industry) for s in planned]


def test_invalid_domains_short_rows_duplicates_and_unsafe_rows_are_dropped(key, tmp_path):
    bad = [
        {"business_description": "Cafe one", "domain_suggestions":
            ["thelondon's.io", "-bakery.co", "ab--cd.com", "Good-Name.com", "fine.io", "ok.co.uk", "more.com"]},
        {"business_description": "Cafe two", "domain_suggestions": ["only.com", "two.io", "bad domain.com"]},
        {"business_description": "cafe ONE", "domain_suggestions": ["x1.com", "x2.com", "x3.com"]},  # duplicate
        {"business_description": "Forbidden thing shop", "domain_suggestions": ["a1.com", "a2.com", "a3.com"]},
        "not an object",
    ]

    def first(request):
        n = len(specs_in(request))
        assert n == 5
        return chat_completion(json.dumps({"rows": bad}))

    def unsafe_text(text):
        return "forbidden" in text.lower()

    with ChatCompletionsStub([first], default=good_rows(itertools.count(100))) as stub:
        result = run(stub, tmp_path, n_rows=5, batch_size=5, safety=(unsafe_text, lambda d: d.startswith("ok.")))
    rows = load_dataset(result.out_path)
    assert len(rows) == 5
    by_desc = {r.description: r.domains for r in rows}
    # invalid ones and the unsafe domain dropped, the rest normalised to lowercase, order kept
    assert by_desc["Cafe one"] == ("good-name.com", "fine.io", "more.com")
    assert "Cafe two" not in by_desc  # only 2 valid domains
    assert "cafe ONE" not in by_desc  # duplicate of "Cafe one"
    assert not any("Forbidden" in d for d in by_desc)
    s = result.stats
    assert s.invalid_domains == 4 and s.unsafe_domains == 1
    assert s.dropped_few_domains == 1 and s.dropped_duplicate == 1
    assert s.dropped_unsafe == 1 and s.dropped_malformed == 1
    # the specs of dropped rows were asked for again
    assert sum(len(specs_in(r)) for r in stub.chat_requests) > 5


def test_eval_overlap_is_dropped(key, tmp_path):
    rows = [{"business_description": "quantum computing research", "domain_suggestions": ["q1.com", "q2.com", "q3.io"]},
            {"business_description": "Harbour sailing club", "domain_suggestions": ["s1.com", "s2.com", "s3.io"]}]
    with ChatCompletionsStub([chat_completion(json.dumps({"rows": rows}))],
                             default=good_rows(itertools.count(200))) as stub:
        result = run(stub, tmp_path, n_rows=2, batch_size=2, exclude=["quantum computing research laboratory"])
    descs = [r.description for r in load_dataset(result.out_path)]
    assert "quantum computing research" not in descs and "Harbour sailing club" in descs
    assert result.stats.dropped_eval_overlap == 1


def test_bad_json_reply_is_retried(key, tmp_path):
    with ChatCompletionsStub([chat_completion("this is not json"), chat_completion(None),
                              chat_completion("```json\n{\"rows\": []}\n```")],
                             default=good_rows(itertools.count(300))) as stub:
        result = run(stub, tmp_path, n_rows=4, batch_size=4)
    assert len(load_dataset(result.out_path)) == 4
    assert result.stats.bad_responses == 2 and result.stats.requests == 4


def test_api_errors_abort_without_writing(key, tmp_path, capsys):
    out = tmp_path / "v3.jsonl"
    with ChatCompletionsStub(default=error_response(500, "upstream broke", type="server_error")) as stub:
        with pytest.raises(groq_v3.GenerationError, match="3 failed requests"):
            run(stub, tmp_path, n_rows=4)
        assert len(stub.chat_requests) == 3  # max_retries=0: one HTTP request per attempt
        code = groq_v3.main(["--out", str(out), "--rows", "4", "--base-url", stub.base_url, "--no-progress"])
    assert code == 1 and "failed requests" in capsys.readouterr().err
    assert not out.exists() and not meta_path_for(out).exists()


def test_gives_up_after_max_requests(key, tmp_path):
    junk = {"rows": [{"business_description": "x", "domain_suggestions": ["bad"]}]}
    with ChatCompletionsStub(default=chat_completion(json.dumps(junk))) as stub:
        with pytest.raises(groq_v3.GenerationError, match="only 0 of 2 rows after 4 requests"):
            run(stub, tmp_path, n_rows=2, max_requests=4)
    assert not (tmp_path / "v3.jsonl").exists()


def test_cli_end_to_end(key, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    with ChatCompletionsStub(default=good_rows(itertools.count(400))) as stub:
        code = groq_v3.main(["--out", str(out), "--rows", "12", "--base-url", stub.base_url, "--model", "m-x",
                             "--batch-size", "6", "--seed", "3", "--temperature", "0.5", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert len(load_dataset(out)) == 12
    assert {r.json["model"] for r in stub.chat_requests} == {"m-x"}
    assert {r.json["temperature"] for r in stub.chat_requests} == {0.5}
    assert "wrote 12 rows" in capsys.readouterr().out


def test_groq_base_url_env_is_honoured(key, tmp_path, monkeypatch):
    with ChatCompletionsStub(default=good_rows(itertools.count(500))) as stub:
        monkeypatch.setenv("GROQ_BASE_URL", stub.base_url)
        result = groq_v3.generate_v3(n_rows=3, out_path=tmp_path / "e.jsonl", exclude=[], safety=NO_SAFETY,
                                     progress=False)
    assert len(result.rows) == 3 and len(stub.chat_requests) == 1


def test_default_safety_uses_domain_eval_safety_when_it_loads():
    try:
        from domain_eval import safety

        safety.default_filter()
    except Exception as exc:  # not built yet, or its policy file is mid-edit
        pytest.skip(f"domain_eval.safety unavailable: {exc}")
    checker = groq_v3._default_safety()
    assert checker is not None
    is_unsafe_text, _ = checker
    assert is_unsafe_text("Online casino with slot machines and live roulette")
    assert not is_unsafe_text("Neighbourhood bakery selling rye bread")
