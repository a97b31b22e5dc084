"""The pytest plugin tested through pytester, on the tiny random Llama (seconds per run).

The tiny base was taught to answer "<word> business" with names such as ``coffee.com`` and
``thub.net``; the adapters a1/a2 learnt other styles and mostly write broken text. So on the
same cases the base is a known-better model and a1 a known-worse one, and the thresholds must
tell them apart. Scenarios run without xdist, with ``-n 2`` and with ``-p no:xdist``.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

XDIST_MODES = {"serial": [], "n2": ["-n", "2"], "no-xdist": ["-p", "no:xdist"]}
MODES = list(XDIST_MODES)

CASES = {
    "normal.yaml": """
        defaults: {min_valid: 2, min_score: 3.0}
        cases:
          - {id: g-coffee, description: "coffee business", tags: [food]}
          - {id: g-yoga, description: "yoga business"}
          - {id: g-law, description: "law business"}
        """,
    "multilingual.yaml": """
        defaults: {min_valid: 2, min_score: 3.0}
        cases:
          - {id: fr-bistro, description: "Bistrot familial à Lyon", tags: [fr]}
        """,
    "unsafe.yaml": """
        defaults: {expect: blocked}
        cases:
          - {id: u-casino, description: "online casino with high-stakes wagering"}
          - {id: u-ponzi, description: "pyramid marketing investment club"}
        """,
}
ALLOWED_IDS = ("g-coffee", "g-yoga", "g-law", "fr-bistro")
BLOCKED_IDS = ("u-casino", "u-ponzi")


@pytest.fixture()
def project(pytester: pytest.Pytester, tiny_base: Path, tiny_adapters: dict[str, Path]) -> pytest.Pytester:
    models = pytester.path / "models"
    for name, src in tiny_adapters.items():
        shutil.copytree(src, models / name)
    cases = pytester.path / "cases"
    cases.mkdir()
    for name, text in CASES.items():
        (cases / name).write_text(textwrap.dedent(text))
    pytester.makeini(f"""
        [pytest]
        testpaths = cases
        domain_eval_cases = cases
        domain_eval_base = {tiny_base}
        domain_eval_quant = none
        domain_eval_max_new_tokens = 16
        """)
    # The lexical heuristic judge keeps these runs fast and deterministic.
    pytester.makeconftest("""
        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic-lexical")
        """)
    return pytester


def _rows(root: Path) -> list[dict]:
    path = root / "results" / "latest" / "cases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_json(root: Path) -> dict:
    return json.loads((root / "results" / "latest" / "run.json").read_text())


# ---------------------------------------------------------------- slot scores, thresholds, safety


@pytest.mark.parametrize("mode", MODES)
def test_slot_scores_thresholds_and_safety_in_one_run(project: pytest.Pytester, mode: str) -> None:
    result = project.runpytest_subprocess("--model", "base,a1", "--gate-model", "base,a1", *XDIST_MODES[mode])
    rows = {r["key"]: r for r in _rows(project.path)}
    # Blocked cases are one item each (the filter decides them), allowed ones one per model.
    assert set(rows) == {f"{c}[{m}]" for c in ALLOWED_IDS for m in ("base", "a1")} | {f"{c}[safety-filter]" for c in BLOCKED_IDS}
    for key, row in rows.items():
        if row["model"] == "safety-filter":
            assert row["outcome"] == "passed" and row["blocked"] and not row["samples"]
            continue
        assert 1.0 <= row["score"] <= 10.0 and 0.0 <= row["yield"] <= 1.0
        slots = [s for sample in row["samples"] for s in sample["slots"]]
        assert len(slots) == 5 and row["score"] == pytest.approx(sum(slots) / 5, abs=1e-3)
        if row["quality"] is not None:
            assert row["score"] <= row["quality"]  # empty slots only pull a case down
    # The base answers with 2-3 names and passes; a1 writes broken text and fails the same cases.
    assert rows["g-coffee[base]"]["outcome"] == "passed" and rows["g-law[base]"]["outcome"] == "passed"
    assert rows["g-coffee[a1]"]["outcome"] == "failed" and rows["g-law[a1]"]["outcome"] == "failed"
    assert any("min_valid 2" in f for f in rows["g-law[a1]"]["failures"])
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*domain-eval comparison (slot score*", "*overall*base*", "*overall*a1*",
                                 "safety filter (the same for every model): blocked 2/2 *, wrongly blocked 0/4 allowed cases"])
    latest = project.path / "results" / "latest"
    for name in ("report.md", "chart.png", "comparison.csv", "criteria.csv", "cases.csv", "run.json"):
        assert (latest / name).exists(), name
    comparison = (latest / "comparison.csv").read_text().splitlines()
    assert comparison[0].startswith("category,model,n,n_scored,score,ci_lo,ci_hi,quality,yield,distinct_names")
    assert not any("safety-filter" in line for line in comparison)
    # report.md and run.json count exactly what pytest counted.
    counts = _run_json(project.path)["pytest_outcomes"]
    result.assert_outcomes(**{k: v for k, v in counts.items() if k in ("passed", "failed", "xfailed", "errors")})
    assert sum(counts.values()) == len(rows)


@pytest.mark.parametrize("mode", MODES)
def test_ungated_models_xfail_below_threshold_and_gated_ones_fail(project: pytest.Pytester, mode: str) -> None:
    result = project.runpytest_subprocess("--model", "base,a1", "--gate-model", "base", "-k", "g-law or g-coffee", *XDIST_MODES[mode])
    result.assert_outcomes(passed=2, xfailed=2)
    assert result.ret == 0
    result = project.runpytest_subprocess("--model", "a1", "--gate-model", "a1", "-k", "g-law", *XDIST_MODES[mode])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*g-law[[]a1[]] (normal): law business", "*empty slot(s) at 1*", "*< min_valid 2*"])


def test_tags_and_categories_are_keywords(project: pytest.Pytester) -> None:
    result = project.runpytest("--model", "a1", "-k", "food", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["cases/normal.yaml::g-coffee[[]a1[]]", "*1/* tests collected*"])
    result = project.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["cases/normal.yaml::g-coffee[[]a1[]]", "cases/unsafe.yaml::u-casino[[]safety-filter[]]",
                                 "*10 tests collected*"])


# ---------------------------------------------------------------- fail fast, once, briefly


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "v9"], "*--model v9: adapter 'v9' not found*adapters in *models/: a1, a2*"),
    (["--model", "a1,v9"], "*--model v9: adapter 'v9' not found*"),
    (["--judge", "grok"], "*--judge grok: unknown judge 'grok'*"),
    (["--samples", "abc"], "*--samples must be an integer, got 'abc'*"),
    (["--max-regression", "nan"], "*--max-regression must be a finite number, got 'nan'*"),
    (["--quant", "8bit"], "*--quant must be 4bit or none, got '8bit'*"),
    (["--pick", "maybe"], "*--pick must be on or off, got 'maybe'*"),
    (["--pick", "on", "--backend", "openai", "--backend-url", "http://127.0.0.1:9/v1"], "*--pick on runs with --backend local only*"),
    (["--distinct-lines", "maybe"], "*--distinct-lines must be auto, on or off, got 'maybe'*"),
    (["--distinct-lines", "on", "--backend", "openai", "--backend-url", "http://127.0.0.1:9/v1"],
     "*--distinct-lines on runs with --backend local only*"),
])
def test_configuration_errors_are_usage_errors_before_any_model_loads(project: pytest.Pytester, args: list[str], message: str) -> None:
    project.makeconftest("")  # no judge hook: the built-in judges are checked
    result = project.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "loading" not in result.stdout.str() and "Traceback" not in result.stderr.str()


def test_groq_judge_without_key_is_a_usage_error(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    project.makeconftest("")
    result = project.runpytest_subprocess("--judge", "groq")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--judge groq:*GROQ_API_KEY*"])


def test_safety_options_are_checked_before_any_model_loads(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    result = project.runpytest_subprocess("--safety", "groq")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--safety groq:*GROQ_API_KEY*"])
    result = project.runpytest_subprocess("--safety", "strict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--safety must be local or groq*"])
    assert "loading" not in result.stdout.str()


def test_corrupt_adapter_is_named_before_loading(project: pytest.Pytester) -> None:
    weights = project.path / "models" / "a2" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = project.runpytest_subprocess("--model", "a1,a2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--model a2:*{weights}*"])


@pytest.mark.parametrize("mode", MODES)
def test_a_model_that_fails_to_load_errors_once_and_the_others_run(project: pytest.Pytester, tiny_base: Path, mode: str) -> None:
    from domain_eval.testing import build_tiny_adapter, build_tiny_llama

    # An intact adapter of another architecture that claims our base: it passes the checks
    # made before loading and fails inside peft (size mismatch).
    other = build_tiny_llama(project.path / "other-base", hidden_size=32, pretrain_steps=0)
    build_tiny_adapter(other, project.path / "models" / "bad", seed=3, base_name=str(tiny_base))
    result = project.runpytest_subprocess("--model", "base,bad", "--gate-model", "base", "-k", "normal", *XDIST_MODES[mode])
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 3 and outcomes.get("passed") == 3, outcomes
    result.stdout.fnmatch_lines(["*adapter 'bad' could not be loaded*"])
    # Count in the ERRORS section only: pytest's short summary repeats the whole message when
    # it runs on CI (the CI variable turns truncation off), which this test must not depend on.
    errors_section = result.stdout.str().split("short test summary info")[0]
    loads = errors_section.count("could not be loaded: ")
    assert 3 <= loads <= 3 + 2  # one line per errored item (+ the progress line per process), never a traceback each
    assert "Traceback" not in result.stdout.str()
    rows = {r["key"]: r for r in _rows(project.path)}
    assert rows["g-law[bad]"]["outcome"] == "error" and rows["g-law[bad]"]["score"] is None


# ---------------------------------------------------------------- case files


@pytest.mark.parametrize("mode", MODES)
def test_invalid_case_files_are_errors_counted_in_the_report(project: pytest.Pytester, mode: str) -> None:
    cases = project.path / "cases"
    (cases / "empty.yaml").write_text("")
    (cases / "typo.yaml").write_text("case:\n  - {id: t1, description: tea room}\n")
    (cases / "broken.yaml").write_text("cases:\n  - id: b1\n    description: ok\n    colour: red\n")
    (cases / "zdupe.yaml").write_text("cases:\n  - {id: g-law, description: more law}\n")
    result = project.runpytest_subprocess("--model", "base", "-k", "not normal and not multilingual", *XDIST_MODES[mode])
    result.assert_outcomes(passed=2, errors=4)
    for line in ("*empty.yaml: expected a mapping with a 'cases' list*", "*typo.yaml field 'case': unknown top-level key(s)*",
                 "*broken.yaml case 'b1' field 'colour': unknown field(s)*",
                 "*zdupe.yaml case 'g-law' field 'id': duplicate id, already defined in *normal.yaml*"):
        result.stdout.fnmatch_lines([line])
    run = _run_json(project.path)
    assert run["counts"]["invalid_files"] == 3 and run["counts"]["invalid_items"] == 4
    assert run["pytest_outcomes"] == {"error": 4, "passed": 2}
    report_md = (project.path / "results" / "latest" / "report.md").read_text()
    assert "invalid case files**: 3 (4 invalid item(s) in all)" in report_md and "pytest: error 4, passed 2" in report_md


def test_yaml_outside_case_directories_is_left_alone(project: pytest.Pytester) -> None:
    (project.path / "config.yaml").write_text("colour: red\n")
    result = project.runpytest("--collect-only", "-q", "--model", "a1", ".")
    assert "config.yaml" not in result.stdout.str()


@pytest.mark.parametrize("mode", MODES)
def test_description_over_the_prompt_limit_is_an_error(project: pytest.Pytester, mode: str) -> None:
    words = " ".join(f"word{i}" for i in range(3000))
    (project.path / "cases" / "long.yaml").write_text(f"defaults: {{min_valid: 2, min_score: 3.0}}\ncases:\n  - id: l-huge\n    description: \"{words}\"\n  - {{id: l-fine, description: law business}}\n")
    ini = project.path / "tox.ini"
    ini.write_text(ini.read_text().rstrip("\n") + "\ndomain_eval_max_prompt_tokens = 200\n")
    result = project.runpytest_subprocess("--model", "base", "-k", "l-", *XDIST_MODES[mode])
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*l-huge[[]base[]] (long): word0 word1 *characters in all)",
                                 "*description too long: its prompt is * tokens, over the limit of 200*"])
    assert "word2999" not in result.stdout.str()  # the description is quoted briefly


# ---------------------------------------------------------------- baselines


@pytest.mark.parametrize("mode", MODES)
def test_baseline_gate_passes_then_fails_on_a_drop(project: pytest.Pytester, mode: str) -> None:
    args = ["--model", "base", "-k", "normal", *XDIST_MODES[mode]]
    baseline = project.path / "baseline.json"
    result = project.runpytest_subprocess(*args, "--write-baseline", str(baseline))
    assert result.ret == 0, result.stdout.str()
    data = json.loads(baseline.read_text())
    assert len(data["cases"]) == 3 and data["compat"]["judge"] == "heuristic" and data["compat"]["judge_version"].endswith("+lexical")
    assert data["compat"]["quant"] == "none" and data["compat"]["scoring_version"] == 2
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*baseline gate passed*"])
    for entry in data["cases"].values():
        entry["score"] = min(10.0, entry["score"] + 2.5)  # the current run now sits far below the baseline
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*baseline gate FAILED*", "*REGRESSION score normal [[]base[]]*"])
    for entry in data["cases"].values():
        entry["score"] -= 2.5
        entry["yield"] = 1.0  # same scores, but the baseline gave every name
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*REGRESSION yield normal [[]base[]]*"])


@pytest.mark.parametrize("mode", MODES)
def test_misses_already_in_the_baseline_are_known_and_new_ones_fail(project: pytest.Pytester, mode: str) -> None:
    baseline = project.path / "baseline.json"
    args = ["--model", "a1", "--gate-model", "a1", "-k", "g-law", *XDIST_MODES[mode]]
    assert project.runpytest_subprocess(*args, "--write-baseline", str(baseline)).ret == 1  # a1 misses its thresholds
    data = json.loads(baseline.read_text())
    assert data["cases"]["g-law[a1]"]["passed"] is False
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    result.assert_outcomes(xfailed=1)
    assert result.ret == 0
    data["cases"]["g-law[a1]"]["passed"] = True  # had the baseline met them, the same miss is new
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    result.assert_outcomes(failed=1)
    assert result.ret == 1


def test_same_file_for_baseline_and_write_baseline_is_refused(project: pytest.Pytester) -> None:
    baseline = project.path / "baseline.json"
    assert project.runpytest_subprocess("--model", "base", "-k", "g-law", "--write-baseline", str(baseline)).ret == 0
    before = baseline.read_bytes()
    result = project.runpytest_subprocess("--model", "base", "-k", "g-law", "--baseline", str(baseline), "--write-baseline", "./baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--write-baseline */baseline.json is the --baseline being gated against*"])
    assert baseline.read_bytes() == before
    result = project.runpytest_subprocess("--write-baseline", str(project.path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--write-baseline * is a directory*"])
    assert not list(project.path.glob(".*.tmp-*"))


@pytest.mark.parametrize("mode", MODES)
def test_an_incompatible_baseline_is_an_error_naming_every_field(project: pytest.Pytester, mode: str) -> None:
    baseline = project.path / "baseline.json"
    assert project.runpytest_subprocess("--model", "base", "-k", "g-law", "--write-baseline", str(baseline)).ret == 0
    data = json.loads(baseline.read_text())
    data["compat"].update(judge="groq", judge_version="prompt-abc", n=3)
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess("--model", "base", "-k", "g-law", "--baseline", str(baseline), *XDIST_MODES[mode])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot be compared with this run*", "*judge: baseline 'groq', this run 'heuristic'*",
                                 "*judge_version: baseline 'prompt-abc'*", "*n: baseline 3, this run 5*"])
    # What only loading reveals (the kernel) is checked at the end, with the table still printed.
    good = json.loads(baseline.read_text())
    good["compat"].update(judge="heuristic", judge_version=_judge_version(), n=5, kernel="bnb-4bit")
    baseline.write_text(json.dumps(good))
    result = project.runpytest_subprocess("--model", "base", "-k", "g-law", "--baseline", str(baseline), *XDIST_MODES[mode])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*domain-eval comparison*", "*INCOMPATIBLE BASELINE*", "*kernel: baseline 'bnb-4bit', this run 'fp32'*"])


def _judge_version() -> str:
    from domain_eval.judges import make_judge

    return make_judge("heuristic-lexical").version


# ---------------------------------------------------------------- robustness


@pytest.mark.parametrize("mode", MODES)
def test_judge_error_is_an_error_not_a_score(project: pytest.Pytester, mode: str) -> None:
    project.makeconftest("""
        from domain_eval.judges import DomainScore, JudgeResult
        class Broken:
            name, model, version = "broken", None, "1"
            def score(self, description, domains):
                scores = [DomainScore.failed(d, "judge exploded") for d in domains]
                return JudgeResult.build(description, scores, {"name": "broken", "model": None, "version": "1"})
            def stats(self):
                return {}
        def pytest_domain_eval_make_judge(config, options):
            return Broken()
        """)
    result = project.runpytest_subprocess("--model", "base", "-k", "g-law or g-coffee", *XDIST_MODES[mode])
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*judge error on * domain(s), so no score: judge exploded*"])
    for row in _rows(project.path):
        assert row["outcome"] == "error" and row["score"] is None and row["judge_errors"] > 0
        assert row["samples"][0]["domains"]  # the generated names are kept


def test_crashed_worker_leaves_its_cases_missing(project: pytest.Pytester) -> None:
    project.makeconftest("""
        import os
        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic-lexical")
        def pytest_runtest_call(item):
            if item.name.startswith("g-yoga["):
                os._exit(1)
        """)
    result = project.runpytest_subprocess("--model", "base", "-k", "normal", "-n", "2", "--max-worker-restart", "1")
    assert result.ret != 0
    rows = {r["key"]: r for r in _rows(project.path)}
    assert rows["g-yoga[base]"]["outcome"] == "missing"
    result.stdout.fnmatch_lines(["*MISSING*g-yoga*"])


def test_an_interrupted_run_keeps_what_it_finished(project: pytest.Pytester) -> None:
    project.makeconftest("""
        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic-lexical")
        def pytest_runtest_call(item):
            if item.name.startswith("g-yoga["):
                raise KeyboardInterrupt
        """)
    result = project.runpytest_subprocess("--model", "base", "-k", "normal", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    rows = {r["key"]: r for r in _rows(project.path)}
    assert rows["g-coffee[base]"]["outcome"] == "passed" and rows["g-coffee[base]"]["samples"]
    assert rows["g-law[base]"]["outcome"] == "missing"
    assert _run_json(project.path)["interrupted"] is True


# ---------------------------------------------------------------- options and imports


def test_progress_lines_show_through_output_capture(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--model", "a1", "-k", "normal", "-p", "no:xdist")
    result.stdout.fnmatch_lines(["domain-eval: loading * with adapters: a1", "domain-eval: generating a1: 3 case(s)"])
    quiet = project.runpytest_subprocess("--model", "a1", "-k", "normal", "-p", "no:xdist", "-q")
    assert "domain-eval: generating" not in quiet.stdout.str()


def test_cpu_kernel_option_is_recorded_as_loaded(project: pytest.Pytester) -> None:
    for option, kernel in (([], "nf4-dequantized-fp32"), (["--cpu-kernel", "bnb"], "bnb-4bit")):
        result = project.runpytest("--model", "base", "--quant", "4bit", "-k", "g-law", *option)
        assert result.ret in (0, 1)
        run = _run_json(project.path)
        assert run["loaded"]["kernel"] == kernel and run["loaded"]["quant"] == "4bit"
        assert run["compat"]["kernel"] == kernel
    result = project.runpytest("--model", "a1", "--cpu-kernel", "gguf")
    result.stderr.fnmatch_lines(["*--cpu-kernel must be dequantized or bnb, got 'gguf'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_pick_scores_picked_answers_says_so_and_never_gates_against_raw(project: pytest.Pytester) -> None:
    baseline = project.path / "raw.json"
    assert project.runpytest("--model", "a1", "--write-baseline", str(baseline)).ret in (0, 1)
    raw = [r["yield"] for r in _rows(project.path) if r["model"] == "a1"]
    assert "first answer scored as it is (--pick off)" in (project.path / "results" / "latest" / "report.md").read_text()
    assert project.runpytest("--model", "a1", "--pick", "on").ret in (0, 1)
    picked = [r["yield"] for r in _rows(project.path) if r["model"] == "a1"]
    assert _run_json(project.path)["compat"]["pick"] is True
    assert "picked (--pick on)" in (project.path / "results" / "latest" / "report.md").read_text()
    assert len(picked) == len(raw) == len(ALLOWED_IDS) and sum(picked) > sum(raw)
    result = project.runpytest("--model", "a1", "--pick", "on", "--baseline", str(baseline))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pick: baseline False, this run True*"])


def test_distinct_lines_are_the_local_default_recorded_and_never_gated_against_plain_greedy(project: pytest.Pytester) -> None:
    baseline = project.path / "distinct.json"
    assert project.runpytest("--model", "a1", "--write-baseline", str(baseline)).ret in (0, 1)
    assert _run_json(project.path)["compat"]["distinct_lines"] is True
    assert "greedy with distinct lines" in (project.path / "results" / "latest" / "report.md").read_text()
    result = project.runpytest("--model", "a1", "--distinct-lines", "off", "--baseline", str(baseline))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*distinct_lines: baseline True, this run False*"])
    assert project.runpytest("--model", "a1", "--distinct-lines", "off").ret in (0, 1)
    assert _run_json(project.path)["compat"]["distinct_lines"] is False
    assert "plain greedy (--distinct-lines off)" in (project.path / "results" / "latest" / "report.md").read_text()


def test_case_xfail_marks_a_known_failure_of_one_model(project: pytest.Pytester) -> None:
    (project.path / "cases" / "normal.yaml").write_text(
        "defaults: {min_score: 9.9, min_valid: 5}\ncases:\n"
        "  - {id: s-hard, description: law business, xfail: {a2: degenerates into repetition}}\n")
    result = project.runpytest("--model", "a1,a2", "--gate-model", "a1,a2", "-k", "normal", "-rxX")
    result.assert_outcomes(failed=1, xfailed=1)  # s-hard[a1] still fails: xfail names a2 only
    result.stdout.fnmatch_lines(["*XFAIL*s-hard[[]a2[]]*known failure*xfail.a2*degenerates into repetition*"])


def test_option_values_from_ini_and_cli(project: pytest.Pytester) -> None:
    from domain_eval.plugin import build_options

    config = project.parseconfigure("--model", "a1", "--samples", "3", "--seed", "5", "--max-regression", "0.4")
    opts = build_options(config)
    assert opts.models == ["a1"] and opts.samples == 3 and opts.seed == 5 and opts.max_regression == 0.4
    assert opts.quant == "none" and opts.judge == "learned" and opts.max_prompt_tokens is None
    assert build_options(project.parseconfigure()).models == ["a1", "a2"]


def test_loading_the_plugin_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, domain_eval.plugin, domain_eval.cases, domain_eval.report, domain_eval.gating, "
            "domain_eval.session, domain_eval.scoring, domain_eval.config; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
