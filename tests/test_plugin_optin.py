"""The plugin in other people's projects: inert until asked, and case folders anywhere."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

FIXTURE_YAML = """
    # An unrelated project's test data that happens to have a top-level `cases:` key.
    cases:
      - {id: not-ours, description: "a fixture of some other tool"}
    """


@pytest.fixture()
def unrelated(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project that has domain-eval installed but never asked for it."""
    data = pytester.path / "tests" / "data"
    data.mkdir(parents=True)
    (data / "fixture.yaml").write_text(textwrap.dedent(FIXTURE_YAML))
    (pytester.path / "tests" / "config.yml").write_text("cases: []\nname: x\n")
    (pytester.path / "tests" / "test_ordinary.py").write_text("def test_ordinary():\n    assert 1 + 1 == 2\n")
    pytester.makeini("[pytest]\n")
    return pytester


@pytest.mark.parametrize("extra", [[], ["-n", "2"]])
def test_an_unrelated_project_runs_exactly_as_without_the_plugin(unrelated: pytest.Pytester, extra: list[str]) -> None:
    with_plugin = unrelated.runpytest_subprocess("-v", *extra)
    without = unrelated.runpytest_subprocess("-v", "-p", "no:domain_eval", *extra)
    with_plugin.assert_outcomes(passed=1)
    without.assert_outcomes(passed=1)
    for result in (with_plugin, without):
        assert "test_ordinary" in result.stdout.str() and "PASSED" in result.stdout.str()
        assert "fixture.yaml" not in result.stdout.str() and "not-ours" not in result.stdout.str()
    if extra:  # xdist's own scheduling is left alone
        with_plugin.stdout.fnmatch_lines(["*2/2 workers*", "scheduling tests via LoadScheduling"])
    assert not (unrelated.path / "results").exists()


def test_ini_case_folders_activate_only_runs_that_reach_them(unrelated: pytest.Pytester) -> None:
    cases = unrelated.path / "cases"
    cases.mkdir()
    (cases / "short.yaml").write_text("cases:\n  - {id: s-one, description: vegan bakery in Leeds}\n")
    unrelated.makeini("[pytest]\ndomain_eval_cases = cases\n")
    result = unrelated.runpytest_subprocess("tests", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["tests/test_ordinary.py::test_ordinary", "1 test collected*"])
    result = unrelated.runpytest_subprocess("cases", "--collect-only", "-q", "--model", "base", "--judge", "heuristic-lexical")
    result.stdout.fnmatch_lines(["cases/short.yaml::s-one[[]base[]]", "1 test collected*"])
    # A whole-project run collects the cases and the tests, but never YAML outside case folders.
    # With no models/ folder, the default models are the adapters shipped in the package.
    result = unrelated.runpytest_subprocess("--collect-only", "-q", "--judge", "heuristic-lexical")
    out = result.stdout.str()
    assert "cases/short.yaml::s-one[v3]" in out and "test_ordinary" in out and "fixture.yaml" not in out


def test_domain_eval_flag_activates_the_paths_given(unrelated: pytest.Pytester) -> None:
    result = unrelated.runpytest_subprocess("tests/data", "--domain-eval", "--collect-only", "-q", "--judge", "heuristic-lexical")
    result.stdout.fnmatch_lines(["tests/data/fixture.yaml::not-ours[[]v1[]]", "tests/data/fixture.yaml::not-ours[[]v4[]]",
                                 "4 tests collected*"])


def test_help_shows_the_option_group(unrelated: pytest.Pytester) -> None:
    result = unrelated.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["domain-eval: evaluate domain-name models on YAML cases:", "*--domain-eval*", "*--model*"])


# --------------------------------------------------------------------------- case folders anywhere
@pytest.fixture()
def project_and_elsewhere(pytester: pytest.Pytester, tiny_base: Path, tiny_adapters: dict[str, Path],
                          tmp_path_factory: pytest.TempPathFactory) -> tuple[pytest.Pytester, Path]:
    project = pytester.path / "project"
    models = project / "models"
    for name, src in tiny_adapters.items():
        shutil.copytree(src, models / name)
    (project / "pytest.ini").write_text(textwrap.dedent(f"""
        [pytest]
        domain_eval_cases = cases
        domain_eval_base = {tiny_base}
        domain_eval_quant = none
        domain_eval_max_new_tokens = 16
        domain_eval_judge = heuristic-lexical
        """))
    # A separate temporary directory: no common ancestor with the project but /tmp itself.
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "cases"
    elsewhere.mkdir()
    (elsewhere / "good.yaml").write_text("category: short\ncases:\n  - {id: e-law, description: law business}\n"
                                         "  - {id: e-law2, description: law business}\n")
    (elsewhere / "bad.yaml").write_text("category: short\ncases:\n  - {id: e-bad, description: 42, min_score: nope}\n")
    return pytester, elsewhere


def test_a_case_folder_outside_the_project_uses_the_projects_configuration(project_and_elsewhere) -> None:
    pytester, elsewhere = project_and_elsewhere
    project = pytester.path / "project"
    pytester.chdir()
    import os

    os.chdir(project)
    result = pytester.runpytest_subprocess(str(elsewhere), "--model", "a1", "-p", "no:cacheprovider")
    assert "adapter 'a1' not found" not in result.stdout.str() + result.stderr.str()
    latest = project / "results" / "latest"
    assert (latest / "cases.jsonl").exists(), result.stdout.str()
    assert not (elsewhere / "results").exists() and not (elsewhere.parent / "results").exists()
    rows = [json.loads(line) for line in (latest / "cases.jsonl").read_text().splitlines() if line.strip()]
    assert {r["case_id"] for r in rows} >= {"e-law", "e-law2"}
    # The file that does not validate: its error row carries the file's real category.
    assert {r["category"] for r in rows} == {"short"}
    comparison = (latest / "comparison.csv").read_text()
    assert "good" not in comparison and "bad" not in comparison
