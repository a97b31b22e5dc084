"""The pytest plugin tested through pytester, on the tiny random Llama (seconds per run).

Every scenario runs without xdist, with ``-n 2`` and with ``-p no:xdist``.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest


XDIST_MODES = {"serial": [], "n2": ["-n", "2"], "no-xdist": ["-p", "no:xdist"]}

CASES = {
    "short.yaml": """
        category: short
        defaults: {min_score: 0.5, min_valid: 0}
        cases:
          - {id: s-sushi, description: "sushi"}
          - {id: s-bikes, description: "bike repair"}
          - {id: s-tax, description: "tax help"}
        """,
    "multilingual.yaml": """
        defaults: {min_valid: 0, min_score: 0.5}
        cases:
          - {id: fr-bistro, description: "Bistrot familial à Lyon", tags: [fr]}
          - {id: de-baecker, description: "Bäckerei in Freiburg", tags: [de]}
        """,
    "unsafe.yaml": """
        defaults: {expect: blocked}
        cases:
          - {id: u-casino, description: "online casino with high-stakes wagering"}
          - {id: u-ponzi, description: "pyramid marketing investment club"}
        """,
}


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
        domain_eval_base = {tiny_base}
        domain_eval_quant = none
        domain_eval_max_new_tokens = 8
        """)
    # A heuristic judge without the embedding model keeps these runs fast and deterministic.
    pytester.makeconftest("""
        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic", semantic=False)
        """)
    return pytester


def _rows(root: Path) -> list[dict]:
    path = root / "results" / "latest" / "cases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("mode", list(XDIST_MODES))
def test_runs_cases_across_models_and_writes_report(project: pytest.Pytester, mode: str) -> None:
    result = project.runpytest_subprocess("--model", "a1,a2", *XDIST_MODES[mode])
    result.assert_outcomes(passed=14)
    rows = _rows(project.path)
    assert sorted(r["key"] for r in rows) == sorted(f"{c}[{m}]" for c in ("s-sushi", "s-bikes", "s-tax", "fr-bistro", "de-baecker", "u-casino", "u-ponzi") for m in ("a1", "a2"))
    unsafe = [r for r in rows if r["category"] == "unsafe"]
    assert all(r["blocked"] and r["block_correct"] and not r["samples"] for r in unsafe)
    result.stdout.fnmatch_lines(["*domain-eval comparison*", "*short*a1*"])
    latest = project.path / "results" / "latest"
    for name in ("report.md", "chart.png", "comparison.csv", "criteria.csv", "cases.csv", "run.json"):
        assert (latest / name).exists(), name
    run = json.loads((latest / "run.json").read_text())
    assert run["options"]["models"] == ["a1", "a2"] if "options" in run else True


@pytest.mark.parametrize("mode", list(XDIST_MODES))
def test_k_selects_by_category_and_model(project: pytest.Pytester, mode: str) -> None:
    result = project.runpytest_subprocess("--model", "a1,a2", "-k", "multilingual and a2", *XDIST_MODES[mode])
    result.assert_outcomes(passed=2)
    assert {r["key"] for r in _rows(project.path)} == {"fr-bistro[a2]", "de-baecker[a2]"}
    result = project.runpytest_subprocess("--model", "a1", "-k", "fr", "--collect-only", "-q", *XDIST_MODES[mode][:2] if mode == "no-xdist" else [])
    result.stdout.fnmatch_lines(["cases/multilingual.yaml::fr-bistro[[]a1[]]"])


def test_item_ids_and_default_models(project: pytest.Pytester) -> None:
    result = project.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["cases/short.yaml::s-sushi[[]a1[]]", "cases/short.yaml::s-sushi[[]a2[]]", "*14 tests collected*"])
    result = project.runpytest("--collect-only", "-q", "--model", "base", "--model", "a2")
    result.stdout.fnmatch_lines(["*14 tests collected*"])


@pytest.mark.parametrize("mode", list(XDIST_MODES))
def test_malformed_file_and_duplicate_ids_fail_clearly_while_others_run(project: pytest.Pytester, mode: str) -> None:
    (project.path / "cases" / "broken.yaml").write_text("cases:\n  - id: b1\n    description: ok\n    colour: red\n")
    (project.path / "cases" / "zdupe.yaml").write_text(
        "defaults: {min_valid: 0, min_score: 0}\ncases:\n  - {id: s-sushi, description: more sushi}\n  - {id: fine, description: tea room}\n")
    result = project.runpytest_subprocess("--model", "a1", *XDIST_MODES[mode])
    result.assert_outcomes(passed=8, failed=2)
    # xdist reports failures in completion order: match each line on its own.
    result.stdout.fnmatch_lines(["*broken.yaml case 'b1' field 'colour': unknown field(s)*"])
    result.stdout.fnmatch_lines(["*zdupe.yaml case 's-sushi' field 'id': duplicate id, already defined in *short.yaml*"])


def test_yaml_syntax_error_names_file_and_line(project: pytest.Pytester) -> None:
    (project.path / "cases" / "bad.yaml").write_text("cases:\n  - id: x\n    description: [unclosed\n")
    result = project.runpytest("--model", "a1", "-k", "bad or sushi")
    result.stdout.fnmatch_lines(["*bad.yaml: invalid YAML (line *"])
    result.assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize("mode", list(XDIST_MODES))
def test_thresholds_fail_gated_models_and_xfail_reported_ones(project: pytest.Pytester, mode: str) -> None:
    (project.path / "cases" / "short.yaml").write_text("defaults: {min_score: 9.9, min_valid: 5}\ncases:\n  - {id: s-hard, description: sushi}\n")
    result = project.runpytest_subprocess("--model", "a1,a2", "--gate-model", "a2", "-k", "short", *XDIST_MODES[mode])
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*s-hard[[]a2[]]*sushi*", "*< min_valid 5*"])
    assert result.ret == 1


def test_progress_lines_show_through_output_capture(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--model", "a1", "-k", "short", "-p", "no:xdist")
    result.stdout.fnmatch_lines(["domain-eval: loading * with adapters: a1", "domain-eval: generating a1: 3 case(s)"])
    quiet = project.runpytest_subprocess("--model", "a1", "-k", "short", "-p", "no:xdist", "-q")
    assert "domain-eval: generating" not in quiet.stdout.str()


def test_cpu_kernel_option_picks_how_4bit_layers_run(project: pytest.Pytester) -> None:
    for option, kernel in (([], "nf4-dequantized-fp32"), (["--cpu-kernel", "bnb"], "bnb-4bit")):
        result = project.runpytest("--model", "a1", "--quant", "4bit", "-k", "fr-bistro", *option)
        result.assert_outcomes(passed=1)
        run = json.loads((project.path / "results" / "latest" / "run.json").read_text())
        assert run["kernels"] == [kernel]
        assert run["options"]["cpu_kernel"] == (option[1] if option else "dequantized")
    result = project.runpytest("--model", "a1", "--cpu-kernel", "gguf")
    result.stderr.fnmatch_lines(["*--cpu-kernel must be dequantized or bnb, got 'gguf'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_case_xfail_marks_a_known_failure_of_one_model(project: pytest.Pytester) -> None:
    (project.path / "cases" / "short.yaml").write_text(
        "defaults: {min_score: 9.9, min_valid: 5}\ncases:\n"
        "  - {id: s-hard, description: sushi, xfail: {a2: degenerates into repetition}}\n"
        "  - {id: s-soft, description: tea, min_score: 0, min_valid: 0, xfail: {a2: not failing any more}}\n")
    result = project.runpytest("--model", "a1,a2", "--gate-model", "a1,a2", "-k", "short", "-rxX")
    result.assert_outcomes(failed=1, xfailed=1, passed=2)  # s-hard[a1] still fails: xfail names a2 only
    result.stdout.fnmatch_lines(["*XFAIL*s-hard[[]a2[]]*known failure*xfail.a2*degenerates into repetition*"])
    (project.path / "cases" / "short.yaml").write_text("cases:\n  - {id: s-x, description: sushi, xfail: [a2]}\n")
    result = project.runpytest("--model", "a1", "-k", "short")
    result.stdout.fnmatch_lines(["*short.yaml case 's-x' field 'xfail': must map model names to a reason*"])


@pytest.mark.parametrize("mode", list(XDIST_MODES))
def test_baseline_gate_passes_then_fails_on_a_drop(project: pytest.Pytester, mode: str) -> None:
    # The tiny base was taught to answer "<word> business" prompts, so these all get scored.
    (project.path / "cases" / "normal.yaml").write_text(
        "defaults: {min_valid: 0, min_score: 0}\ncases:\n"
        + "".join(f"  - {{id: g-{w}, description: {w} business}}\n" for w in ("coffee", "yoga", "bike", "sushi", "tea", "law"))
    )
    args = ["--model", "base", "-k", "normal", *XDIST_MODES[mode]]
    baseline = project.path / "baseline.json"
    result = project.runpytest_subprocess(*args, "--write-baseline", str(baseline))
    assert result.ret == 0, result.stdout.str()
    data = json.loads(baseline.read_text())
    assert len(data["cases"]) >= 3, data
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*baseline gate passed*"])
    for entry in data["cases"].values():
        entry["score"] = min(10.0, entry["score"] + 2.5)  # the current run now sits far below the baseline
    baseline.write_text(json.dumps(data))
    result = project.runpytest_subprocess(*args, "--baseline", str(baseline))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*baseline gate FAILED*", "*REGRESSION normal [[]base[]]*"])


@pytest.mark.parametrize("mode", list(XDIST_MODES))
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
    # A trained-looking adapter is not needed: force domains by judging a fixed output? The tiny
    # model rarely emits valid domains, so check the row-level accounting on whatever it produced.
    project.runpytest_subprocess("--model", "a1", "-k", "short", *XDIST_MODES[mode])
    rows = _rows(project.path)
    for row in rows:
        assert row["judge_mean"] is None
        produced = sum(len(s["domains"]) for s in row["samples"])
        assert row["judge_errors"] == produced
        if produced:
            assert row["outcome"] == "error"


@pytest.mark.parametrize("mode", ["n2"])
def test_crashed_worker_leaves_its_cases_missing(project: pytest.Pytester, mode: str) -> None:
    project.makeconftest("""
        import os
        def pytest_domain_eval_make_judge(config, options):
            from domain_eval.judges import make_judge
            return make_judge("heuristic", semantic=False)
        def pytest_runtest_call(item):
            if item.name.startswith("s-tax["):
                os._exit(1)
        """)
    result = project.runpytest_subprocess("--model", "a1", "-k", "short", *XDIST_MODES[mode], "--max-worker-restart", "1")
    assert result.ret != 0
    rows = {r["key"]: r for r in _rows(project.path)}
    assert rows["s-tax[a1]"]["outcome"] == "missing"
    result.stdout.fnmatch_lines(["*MISSING*s-tax*"])


def test_private_case_directory(project: pytest.Pytester) -> None:
    private = project.path / "private_cases"
    private.mkdir()
    (private / "mine.yaml").write_text("category: normal\ndefaults: {min_valid: 0, min_score: 0.5}\ncases:\n  - {id: p-tea, description: loose-leaf tea subscription}\n")
    result = project.runpytest("private_cases", "--model", "a1")
    result.assert_outcomes(passed=1)
    assert [r["key"] for r in _rows(project.path)] == ["p-tea[a1]"]


def test_bad_options_are_usage_errors(project: pytest.Pytester) -> None:
    result = project.runpytest("--samples", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--samples must be >= 1*"])
    result = project.runpytest("--quant", "8bit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_option_values_from_ini_and_cli(project: pytest.Pytester) -> None:
    from domain_eval.plugin import build_options

    config = project.parseconfigure("--model", "a1", "--samples", "3", "--seed", "5", "--max-regression", "0.25")
    opts = build_options(config)
    assert opts.models == ["a1"] and opts.samples == 3 and opts.seed == 5 and opts.max_regression == 0.25
    assert opts.quant == "none" and opts.judge == "heuristic"
    config = project.parseconfigure()
    assert build_options(config).models == ["a1", "a2"]


def test_loading_the_plugin_does_not_import_torch(project: pytest.Pytester) -> None:
    import subprocess
    import sys

    code = "import sys, domain_eval.plugin, domain_eval.cases, domain_eval.report, domain_eval.gating; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
