"""The controller-side session: every result row (also from xdist workers), what pytest reported
for each item, run metadata, baseline compatibility, gating and writing.

The pytest hooks in :mod:`domain_eval.plugin` stay thin and hand everything here. Only the
controller (the process without ``workerinput``) has one.
"""
from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import pytest

from domain_eval.cases import CaseError, file_category, load_case_file
from domain_eval.config import EvalOptions
from domain_eval.scoring import RESULT_SCHEMA, SCORING_VERSION, SAFETY_FILTER

RESULT_PROPERTY = "domain_eval"
ITEM_ID = re.compile(r"^(?P<path>.+\.ya?ml)::(?P<case>[^\[<]+)\[(?P<model>.+)\]$")
_PACKAGES = ("domain-eval", "torch", "transformers", "peft", "bitsandbytes", "sentence-transformers", "pytest", "pytest-xdist")


def compat_of(options: EvalOptions, judge: dict[str, Any], loaded: dict[str, Any],
              served: dict[str, Any] | None = None) -> dict[str, Any]:
    """What this run's scores depend on (see :data:`domain_eval.gating.COMPAT_FIELDS`).

    With a server backend, the served model (name, and adapter hash where the server reports one)
    and the server's version stand in for what this process would have loaded; quantisation and
    kernel are what the server reports, never this run's local options.
    """
    from domain_eval.config import make_safety_filter
    from domain_eval.models import canonical_base_name

    local = options.backend == "local"
    served_compat = None
    if served is not None:
        served_compat = {"version": served.get("server_version"),
                         "models": {label: card.get("id") + (f"@{card['adapter_sha256'][:12]}" if card.get("adapter_sha256") else "")
                                    for label, card in sorted((served.get("models") or {}).items()) if card.get("id")}}
    return {
        "safety": make_safety_filter(options).version,
        "scoring_version": SCORING_VERSION,
        "judge": judge.get("name"), "judge_version": judge.get("version"), "judge_model": judge.get("model"),
        "base": loaded.get("base") or canonical_base_name(options.base), "base_sha256": loaded.get("base_sha256"),
        "quant": loaded.get("quant") or (options.quant if local else None), "kernel": loaded.get("kernel"),
        "backend": options.backend, "served": served_compat,
        "n": options.n, "samples": options.samples, "seed": options.seed if options.samples > 1 else None,
        "max_new_tokens": options.max_new_tokens, "pick": options.pick,
        "distinct_lines": options.distinct_lines,
    }


class EvalSession:
    """Controller-only pytest plugin object: aggregates rows, gates, writes, prints."""

    def __init__(self, config: pytest.Config, options: EvalOptions, judge: dict[str, Any], baseline: dict | None) -> None:
        self.config = config
        self.options = options
        self.judge = judge  # identity of the judge built at configure time
        self.baseline = baseline
        self.rows: dict[str, dict[str, Any]] = {}
        self.pytest_outcomes: dict[str, str] = {}
        self.expected: set[str] = set()
        self.worker_outputs: list[dict[str, Any]] = []
        self.worker_errors: list[str] = []
        self.local_output: Any = None  # callable returning this process's EvalRun output (no xdist)
        self.run_dir: Path | None = None
        self.gate: Any = None
        self.gate_error: str | None = None
        self.write_error: str | None = None
        self.baseline_written: Path | None = None
        self.table: list[dict[str, Any]] = []
        self.interrupted = False
        self.start = time.time()
        self._case_cache: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ progress
    def progress(self, message: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.config.get_verbosity() < 0:
            return
        # Messages come from inside a test, where output capture would swallow them.
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            tr.write_line(f"domain-eval: {message}", cyan=True)

    # ------------------------------------------------------------------ hooks
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from domain_eval.plugin import CaseItem

        self.expected.update(it.nodeid for it in session.items if isinstance(it, CaseItem))

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                self.rows.setdefault(report.nodeid, json.loads(value))
        outcome = self._pytest_outcome(report)
        if outcome:
            self.pytest_outcomes[report.nodeid] = outcome
        crashed = report.failed and (report.when == "???" or "crashed" in str(report.longrepr))
        if (crashed or (report.failed and report.nodeid not in self.rows)) and ITEM_ID.match(report.nodeid):
            # The item died without a verdict (its worker crashed mid-item...): whatever its setup
            # produced is not a result that pytest reported.
            row = self._stub_row(report.nodeid, "missing" if crashed else "error")
            row["failures"] = [str(report.longrepr).strip().splitlines()[-1] if report.longrepr else "unknown error"]
            self.rows[report.nodeid] = row

    @staticmethod
    def _pytest_outcome(report: pytest.TestReport) -> str | None:
        if report.when == "setup":
            return "error" if report.failed else ("skipped" if report.skipped and not hasattr(report, "wasxfail") else None)
        if report.when == "call" or report.when == "???":
            if hasattr(report, "wasxfail"):
                return "xpassed" if report.passed else "xfailed"
            return report.outcome
        if report.when == "teardown" and report.failed:
            return "error"
        return None

    def add_worker_output(self, output: dict[str, Any]) -> None:
        self.worker_outputs.append(output)

    # ------------------------------------------------------------------ rows that never ran
    def _stub_row(self, nodeid: str, outcome: str) -> dict[str, Any]:
        match = ITEM_ID.match(nodeid)
        assert match
        path, case_id, model = match["path"], match["case"], match["model"]
        case = self._case(path, case_id)
        return {
            "schema": RESULT_SCHEMA, "nodeid": nodeid, "key": f"{case_id}[{model}]", "case_id": case_id, "model": model,
            "category": case.category if case else file_category(self._full_path(path), case_id),
            "description": case.description if case else None,
            "expect": case.expect if case else None, "outcome": outcome, "failures": [], "samples": [],
            "score": None, "judge_errors": 0,
        }

    def _full_path(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else Path(str(self.config.rootpath)) / path

    def _case(self, path: str, case_id: str) -> Any:
        if path not in self._case_cache:
            try:
                full = self._full_path(path)
                self._case_cache[path] = {c.id: c for c in load_case_file(full).cases}
            except (CaseError, OSError):
                self._case_cache[path] = {}
        return self._case_cache[path].get(case_id)

    # ------------------------------------------------------------------ metadata
    def _outputs(self) -> list[dict[str, Any]]:
        outputs = list(self.worker_outputs)
        if self.local_output is not None and not self.config.pluginmanager.getplugin("dsession"):
            outputs.append(self.local_output())
        return outputs

    def _loaded(self, outputs: list[dict[str, Any]]) -> dict[str, Any]:
        """What loaded, across processes; fields on which processes disagree become lists."""
        merged: dict[str, Any] = {}
        for key in ("base", "base_sha256", "quant", "kernel", "device"):
            values = sorted({str(o["loaded"][key]) for o in outputs if (o.get("loaded") or {}).get(key) is not None})
            if values:
                merged[key] = values[0] if len(values) == 1 else values
        return merged

    def _judge_used(self, outputs: list[dict[str, Any]]) -> dict[str, Any]:
        identities = {json.dumps(o["judge"], sort_keys=True) for o in outputs if o.get("judge")}
        if len(identities) == 1:
            return json.loads(identities.pop())
        return self.judge if not identities else {"name": "mixed", "version": sorted(identities), "model": None}

    def run_meta(self, outputs: list[dict[str, Any]], compat: dict[str, Any], loaded: dict[str, Any],
                 judge: dict[str, Any], served: dict[str, Any] | None = None) -> dict[str, Any]:
        per_model: dict[str, dict[str, float]] = {}
        hashes: dict[str, str] = {}
        model_errors: dict[str, str] = {}
        for out in outputs:
            hashes.update(out.get("adapter_hashes") or {})
            model_errors.update(out.get("model_errors") or {})
            for b in out.get("batches", []):
                m = per_model.setdefault(b["model"], {"generation_seconds": 0.0, "cases": 0, "new_tokens": 0})
                m["generation_seconds"] = round(m["generation_seconds"] + b["seconds"], 3)
                m["cases"] += b["cases"]
                m["new_tokens"] += b["new_tokens"]
        versions = {}
        for pkg in _PACKAGES:
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = None
        models = sorted({r.get("model") for r in self.rows.values() if r.get("model") and r.get("model") != SAFETY_FILTER})
        return {
            "compat": compat,
            "options": self.options.to_dict(),
            "backend": {"name": self.options.backend, "served": served,
                        "stats": [o["backend_stats"] for o in outputs if o.get("backend_stats")]},
            "models": {m: {"adapter_sha256": hashes.get(m)} for m in models},
            "loaded": loaded,
            "judge": {**judge, "stats": [o["judge_stats"] for o in outputs if o.get("judge_stats")]},
            "seeds": [s if s is not None else "greedy" for s in self.options.seeds],
            "per_model": per_model,
            "model_errors": model_errors,
            "model_load_seconds": [o.get("load_seconds") for o in outputs if o.get("load_seconds")],
            "workers": len(outputs), "worker_errors": self.worker_errors,
            "pytest_outcomes": self._outcome_counts(),
            "interrupted": self.interrupted,
            "wall_seconds": round(time.time() - self.start, 2),
            "python": platform.python_version(), "versions": versions,
            "args": list(self.config.invocation_params.args),
        }

    def _outcome_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.pytest_outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    # ------------------------------------------------------------------ the end
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            self.rows.clear()
            return
        for nodeid in sorted(self.expected - set(self.rows)):
            self.rows[nodeid] = self._stub_row(nodeid, "missing")
            if self.interrupted:
                self.rows[nodeid]["failures"] = ["not run: the session was interrupted"]
        for nodeid, row in self.rows.items():
            row["pytest_outcome"] = self.pytest_outcomes.get(nodeid, row.get("pytest_outcome"))
        if not self.rows:
            return
        from domain_eval import gating, report

        rows = list(self.rows.values())
        self.table = report.comparison_table(rows)
        outputs = self._outputs()
        loaded, judge = self._loaded(outputs), self._judge_used(outputs)
        served = next((o["served"] for o in outputs if o.get("served")), None)
        compat = compat_of(self.options, judge, loaded, served)
        meta = self.run_meta(outputs, compat, loaded, judge, served)
        # What the baseline's scores depend on must match, both for the report's per-case
        # regressions and for the gate.
        problems = gating.incompatibilities(self.baseline.get("compat", {}), compat) if self.baseline is not None else []
        compatible = self.baseline is not None and not problems
        if self.options.report:
            try:
                self.run_dir = report.write_report(rows, self.options.report_dir, meta,
                                                   baseline_cases=self.baseline.get("cases") if compatible else None,
                                                   max_drop=self.options.max_regression)
            except OSError as exc:
                self.progress(f"could not write the report: {exc}")
        status = session.exitstatus
        if self.baseline is not None:
            if problems:
                self.gate_error = (f"{self.options.baseline} cannot be compared with this run; what its scores depend on differs:\n  "
                                   + "\n  ".join(problems))
                status = pytest.ExitCode.USAGE_ERROR
            else:
                self.gate = gating.compare(rows, self.baseline, self.options.max_regression,
                                           max_yield_drop=self.options.max_yield_drop)
                if self.gate.failed and status == pytest.ExitCode.OK:
                    status = pytest.ExitCode.TESTS_FAILED
        if self.options.write_baseline:
            # After gating, so a failed gate still leaves the new scores for review, never in place of the old.
            try:
                self.baseline_written = gating.write_baseline(rows, self.options.write_baseline, compat,
                                                              {k: meta[k] for k in ("models", "loaded", "judge", "args")})
            except (OSError, ValueError) as exc:
                self.write_error = f"could not write the baseline {self.options.write_baseline}: {exc}"
                if status == pytest.ExitCode.OK:
                    status = pytest.ExitCode.INTERNAL_ERROR
        if any(r.get("outcome") == "missing" for r in rows) and status == pytest.ExitCode.OK:
            status = pytest.ExitCode.TESTS_FAILED
        session.exitstatus = status

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        from domain_eval import gating, report

        tr = terminalreporter
        tr.write_sep("=", "domain-eval comparison (slot score 1-10, 95% bootstrap CI)")
        tr.write_line(report.format_table(report.summary_table(self.table), fmt="simple"))
        safety = report.safety_summary(list(self.rows.values()))
        if safety:
            tr.write_line(safety)
        missing = [r.get("nodeid") or r["key"] for r in self.rows.values() if r.get("outcome") == "missing"]
        if missing:
            tr.write_line(f"MISSING: {len(missing)} case(s) produced no result (worker crashed or run stopped early): "
                          + ", ".join(missing[:10]), red=True)
        if self.run_dir:
            tr.write_line(f"report: {self.run_dir}/report.md  (latest: {Path(self.options.report_dir) / 'latest'})")
        if self.baseline_written:
            tr.write_line(f"baseline written: {self.baseline_written}")
        if self.write_error:
            tr.write_line(self.write_error, red=True)
        if self.gate_error:
            tr.write_sep("-", "baseline gate: INCOMPATIBLE BASELINE", red=True)
            tr.write_line(self.gate_error, red=True)
        elif self.gate is not None:
            tr.write_sep("-", "baseline gate " + ("FAILED" if self.gate.failed else "passed"), red=self.gate.failed, green=not self.gate.failed)
            tr.write_line(gating.format_gate(self.gate))
