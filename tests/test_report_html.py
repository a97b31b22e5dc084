"""report.html in a real headless browser (Debian's chromium + chromedriver, driven by Selenium).

The page is built from the committed reference run (5 models x 167 cases, real outputs), so
what is tested is what a reader of a real run sees. `make setup` / `.ci/run` install chromium
as root; without it this test fails with the install command (a browser test that skips
would pass without testing anything).
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import pytest

from domain_eval import report

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "results" / "reference" / "cases.jsonl"
BASELINE = REPO / "results" / "baseline.json"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.fail("report.html is tested in headless Chromium: apt-get install chromium chromium-driver "
                    "(make setup does this as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    yield driver
    driver.quit()


def _cases(rows: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["case_id"], []).append(r)
    return by


def _open(browser, run_dir: Path) -> float:
    start = time.perf_counter()
    browser.get((run_dir / "report.html").as_uri())
    return time.perf_counter() - start


def _shown(browser) -> str:
    return browser.find_element("id", "shown").text


def _visible_ids(browser) -> set[str]:
    return {tr.get_attribute("data-id") for tr in browser.find_elements("css selector", "tr.case")}


def test_report_html_filters_in_a_real_browser(browser, tmp_path: Path) -> None:
    rows = report.read_cases(REFERENCE)
    baseline = json.loads(BASELINE.read_text())
    run_dir = report.write_report(rows, tmp_path / "results", {"judge": {"name": "heuristic"}}, run_id="ref",
                                  baseline_cases=baseline["cases"])
    html = (run_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    seconds = _open(browser, run_dir)
    cases = _cases(rows)
    load_ms = browser.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"report.html ({len(html) / 1024:.0f} KiB, {len(cases)} cases x 5 models): loaded and drawn in "
          f"{load_ms:.0f} ms (browser's navigation timing), {seconds:.2f} s as the driver saw it")
    assert _shown(browser) == f"{len(cases)} of {len(cases)} cases shown"
    # Side by side: one column per model, the names each model wrote in its cell.
    header = [th.text for th in browser.find_elements("css selector", "#cases tr:first-child th")]
    assert header == ["case", "description", "safety", "base", "v1", "v2", "v3", "v4"]
    some = next(r for r in rows if r["model"] == "v3" and r["samples"] and r["samples"][0]["domains"])
    row_el = browser.find_element("css selector", f'tr.case[data-id="{some["case_id"]}"]')
    assert some["samples"][0]["domains"][0]["domain"] in row_el.text

    # Only failing: exactly the cases where some model failed or errored.
    failing = {cid for cid, rs in cases.items() if any(r["outcome"] in ("failed", "error", "missing") and r["model"] != "safety-filter"
                                                       for r in rs) or any(r.get("block_correct") is False for r in rs)}
    browser.find_element("id", "f-fail").click()
    assert _visible_ids(browser) == failing and _shown(browser).startswith(f"{len(failing)} of")
    browser.find_element("id", "f-fail").click()

    # By category.
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "f-cat")).select_by_value("multilingual")
    assert _visible_ids(browser) == {cid for cid, rs in cases.items() if rs[0]["category"] == "multilingual"}
    Select(browser.find_element("id", "f-cat")).select_by_value("")

    # By tag.
    Select(browser.find_element("id", "f-tag")).select_by_value("near-miss")
    assert _visible_ids(browser) == {cid for cid, rs in cases.items() if "near-miss" in (rs[0].get("tags") or [])}
    Select(browser.find_element("id", "f-tag")).select_by_value("")

    # Only where the models' names differ.
    def names(r: dict) -> str:
        return " ".join(sorted({d["domain"] for s in r["samples"] for d in s["domains"]}))

    differ = {cid for cid, rs in cases.items() if len({names(r) for r in rs if r["model"] != "safety-filter"}) > 1}
    browser.find_element("id", "f-differ").click()
    assert _visible_ids(browser) == differ
    browser.find_element("id", "f-differ").click()

    # Regressions: the reference run is its own baseline, so none.
    browser.find_element("id", "f-reg").click()
    assert _visible_ids(browser) == set()
    browser.find_element("id", "f-reg").click()
    Select(browser.find_element("id", "f-cat")).select_by_value("short")
    browser.find_element("id", "cases").location_once_scrolled_into_view
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_regression_filter_finds_a_planted_drop(browser, tmp_path: Path) -> None:
    rows = report.read_cases(REFERENCE)
    baseline = json.loads(BASELINE.read_text())
    victim = next(r for r in rows if r["model"] == "v3" and r["outcome"] == "passed")
    worse = copy.deepcopy(rows)
    for r in worse:
        if r["key"] == victim["key"]:
            r["score"] = max(1.0, r["score"] - 2.0)
    run_dir = report.write_report(worse, tmp_path / "results", {}, run_id="worse", baseline_cases=baseline["cases"])
    _open(browser, run_dir)
    browser.find_element("id", "f-reg").click()
    assert _visible_ids(browser) == {victim["case_id"]}
    assert "baseline" in browser.find_element("css selector", "td.reg").text


def test_without_a_baseline_the_regression_filter_is_disabled(browser, tmp_path: Path) -> None:
    run_dir = report.write_report(report.read_cases(REFERENCE), tmp_path / "results", {}, run_id="nobase")
    _open(browser, run_dir)
    assert not browser.find_element("id", "f-reg").is_enabled()
