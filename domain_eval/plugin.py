"""pytest plugin: YAML cases x model fixtures, assertions, per-category report, baseline gating.

Thin by design: options and hooks live here; the work is in :mod:`domain_eval.run`
(generation, scoring), :mod:`domain_eval.report` and :mod:`domain_eval.gating`. Importing
this module must not import torch, so ``pytest --help`` and ``--collect-only`` stay fast.
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from domain_eval.cases import Case, CaseDefaults, CaseError, load_case_file

RESULT_PROPERTY = "domain_eval"
RUN_KEY = pytest.StashKey["Any"]()
REPORTER_KEY = pytest.StashKey["DomainEvalReporter"]()
_OWNERS_KEY = pytest.StashKey[dict]()  # case id -> file that defined it first
_CASE_FILE_MARKER = re.compile(r"^cases\s*:", re.MULTILINE)
_ITEM_ID = re.compile(r"^(?P<path>.+\.ya?ml)::(?P<case>[^\[]+)\[(?P<model>.+)\]$")

# (option, ini name, ini type, default, help)
_OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("--model", "domain_eval_models", "args", [], "models to evaluate: comma list, repeatable. A name in models/, an adapter folder, 'base' (no adapter) or 'all'. Default: every adapter in models/."),
    ("--base", "domain_eval_base", "string", "smollm2-135m", "base model: embedded 'smollm2-135m', an HF id or a local folder."),
    ("--quant", "domain_eval_quant", "string", "4bit", "4bit (NF4 via bitsandbytes) or none."),
    ("--cpu-kernel", "domain_eval_cpu_kernel", "string", "dequantized", "4-bit on CPU: 'dequantized' (NF4 weights dequantised once, fp32: same output batched or alone) or 'bnb' (bitsandbytes' kernels: faster, output depends on the batch)."),
    ("--models-dir", "domain_eval_models_dir", "string", "models", "where named adapters live."),
    ("--judge", "domain_eval_judge", "string", "heuristic", "heuristic (offline) or groq (needs GROQ_API_KEY or a recorded --judge-cache)."),
    ("--judge-model", "domain_eval_judge_model", "string", None, "LLM judge model (groq default: openai/gpt-oss-120b)."),
    ("--judge-cache", "domain_eval_judge_cache", "string", None, "SQLite judge cache; replays recorded judgements offline."),
    ("--samples", "domain_eval_samples", "string", "1", "generations per case: 1 = greedy, N > 1 = seeded sampling."),
    ("--seed", "domain_eval_seed", "string", "0", "first seed for sampled generations."),
    ("--report-dir", "domain_eval_report_dir", "string", "results", "where results/<run-id>/ and results/latest are written."),
    ("--baseline", "domain_eval_baseline", "string", None, "baseline JSON to gate against (paired on case ids)."),
    ("--max-regression", "domain_eval_max_regression", "string", "0.5", "largest allowed drop of a category's mean judge score."),
    ("--write-baseline", "domain_eval_write_baseline", "string", None, "write this run's per-case scores as a baseline JSON."),
    ("--gate-model", "domain_eval_gate_models", "args", None, "models whose score thresholds fail the run (comma list, repeatable); others are reported as xfail. Default: all."),
    ("--safety-policy", "domain_eval_safety_policies", "args", [], "extra safety policy YAML (repeatable)."),
]
_INI_ONLY: list[tuple[str, str, Any, str]] = [
    ("domain_eval_min_score", "string", "4.0", "min judge mean when neither case nor file sets one"),
    ("domain_eval_min_valid", "string", "1", "min valid domains when neither case nor file sets one"),
    ("domain_eval_batch_size", "string", "64", "most prompts per generation batch (long prompts go in smaller ones)"),
    ("domain_eval_max_new_tokens", "string", "64", "max generated tokens per case"),
    ("domain_eval_n", "string", "5", "domains requested per case"),
]


def _dest(opt: str) -> str:
    return "domain_eval_" + opt.lstrip("-").replace("-", "_")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from domain_eval import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("domain-eval", "domain-eval: evaluate domain-name models on YAML cases")
    for opt, ini, ini_type, default, help_text in _OPTIONS:
        action = "append" if ini_type == "args" else "store"
        group.addoption(opt, dest=_dest(opt), action=action, default=None, help=f"{help_text} [ini: {ini}]")
        parser.addini(ini, help_text, type=ini_type if ini_type == "args" else "string", default=default)
    group.addoption("--no-report", dest="domain_eval_no_report", action="store_true", help="do not write results/ (still prints the table)")
    for ini, ini_type, default, help_text in _INI_ONLY:
        parser.addini(ini, help_text, type=ini_type, default=default)


def _value(config: pytest.Config, opt: str, ini: str) -> Any:
    value = config.getoption(_dest(opt))
    return value if value is not None else config.getini(ini)


def _comma_list(values: Any) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def build_options(config: pytest.Config) -> Any:
    from domain_eval.run import EvalOptions, resolve_models

    get = lambda opt, ini: _value(config, opt, ini)  # noqa: E731
    root = Path(str(config.rootpath))
    models_dir = Path(get("--models-dir", "domain_eval_models_dir"))
    if not models_dir.is_absolute():
        models_dir = root / models_dir
    gate = config.getoption(_dest("--gate-model"))
    gate_models = _comma_list(gate if gate is not None else config.getini("domain_eval_gate_models")) or None
    try:
        return EvalOptions(
            models=resolve_models(_comma_list(config.getoption(_dest("--model")) or config.getini("domain_eval_models")), models_dir),
            models_dir=str(models_dir),
            base=get("--base", "domain_eval_base"),
            quant=get("--quant", "domain_eval_quant"),
            cpu_kernel=get("--cpu-kernel", "domain_eval_cpu_kernel"),
            judge=get("--judge", "domain_eval_judge"),
            judge_model=get("--judge-model", "domain_eval_judge_model") or None,
            judge_cache=get("--judge-cache", "domain_eval_judge_cache") or None,
            samples=int(get("--samples", "domain_eval_samples")),
            seed=int(get("--seed", "domain_eval_seed")),
            n=int(config.getini("domain_eval_n")),
            batch_size=int(config.getini("domain_eval_batch_size")),
            max_new_tokens=int(config.getini("domain_eval_max_new_tokens")),
            report_dir=str(root / get("--report-dir", "domain_eval_report_dir")),
            baseline=get("--baseline", "domain_eval_baseline") or None,
            write_baseline=get("--write-baseline", "domain_eval_write_baseline") or None,
            max_regression=float(get("--max-regression", "domain_eval_max_regression")),
            gate_models=gate_models,
            safety_policies=_comma_list(get("--safety-policy", "domain_eval_safety_policies")),
            report=not config.getoption("domain_eval_no_report"),
        )
    except ValueError as exc:
        raise pytest.UsageError(f"domain-eval: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    from domain_eval.run import EvalRun

    config.addinivalue_line("markers", "domain_eval: a domain-eval YAML case (added automatically)")
    if config.option.help or config.option.version:
        return
    options = build_options(config)
    is_worker = hasattr(config, "workerinput")
    reporter: DomainEvalReporter | None = None
    if not is_worker:
        reporter = DomainEvalReporter(config, options)
        config.stash[REPORTER_KEY] = reporter
        config.pluginmanager.register(reporter, "domain-eval-reporter")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(reporter), "domain-eval-xdist")
            _prefer_file_scheduling(config)

    def progress(message: str) -> None:
        if reporter is not None:
            reporter.progress(message)

    def judge_factory() -> Any:
        return config.hook.pytest_domain_eval_make_judge(config=config, options=options)

    config.stash[RUN_KEY] = EvalRun(options, judge_factory=judge_factory, progress=progress)


def _prefer_file_scheduling(config: pytest.Config) -> None:
    """Send each case file (a category) to one worker, so it generates the category's cases in
    one batch per model instead of splitting batches across workers. ``--dist`` given explicitly wins."""
    args = config.invocation_params.args
    explicit = any(a == "--dist" or a.startswith("--dist=") or a == "-d" for a in args)
    if getattr(config.option, "dist", "no") == "load" and not explicit:
        config.option.dist = "loadfile"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    try:
        head = file_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not _CASE_FILE_MARKER.search(head):
        return None  # some other YAML (a config, a test fixture): not ours
    return CaseFile.from_parent(parent, path=file_path)


class CaseFile(pytest.File):
    """One YAML file of cases; yields one item per case and model."""

    def collect(self) -> Iterator[pytest.Item]:
        config = self.config
        run = config.stash[RUN_KEY]
        fallback = CaseDefaults(min_score=float(config.getini("domain_eval_min_score")),
                                min_valid=int(config.getini("domain_eval_min_valid")))
        try:
            loaded = load_case_file(self.path, fallback)
        except CaseError as exc:
            yield InvalidCaseItem.from_parent(self, name="<invalid-file>", error=exc)
            return
        owners: dict[str, str] = config.stash.setdefault(_OWNERS_KEY, {})
        from domain_eval.run import model_label

        for case in loaded.cases:
            owner = owners.setdefault(case.id, str(self.path))
            if owner != str(self.path):
                err = CaseError(self.path, f"duplicate id, already defined in {owner}", case.id, "id")
                yield InvalidCaseItem.from_parent(self, name=f"{case.id}<duplicate>", error=err)
                continue
            for model in run.options.models:
                label = model_label(model)
                item = CaseItem.from_parent(self, name=f"{case.id}[{label}]", case=case, model=label)
                for keyword in (case.category, label, *case.tags):
                    item.keywords[keyword] = True
                item.add_marker(pytest.mark.domain_eval)
                yield item



class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.model = model

    def _batch(self) -> list[Case]:
        """Cases of this model that this process will run, generated together.

        An xdist worker only learns its files one by one, so it batches per file; a single
        process runs every file and batches across them (bigger batches, fewer passes).
        """
        items = getattr(self.session, "items", None) or [self]
        same_file = hasattr(self.config, "workerinput")
        return [it.case for it in items if isinstance(it, CaseItem) and it.model == self.model
                and (it.path == self.path or not same_file)]

    def runtest(self) -> None:
        from domain_eval.run import CaseFailure, JudgeFailed, dumps, format_failure

        run = self.config.stash[RUN_KEY]
        row = run.evaluate(self.case, self.model, batch=self._batch)
        row["nodeid"] = self.nodeid
        self.user_properties.append((RESULT_PROPERTY, dumps(row)))
        if row["outcome"] == "passed":
            return
        message = format_failure(row)
        if row["outcome"] == "error":
            raise JudgeFailed(message)
        if row.get("threshold_only") and not row["gated"]:
            pytest.xfail(f"below threshold; model '{self.model}' is reported, not gated\n{message}")
        known = self.case.known_failure(self.model)
        if known:
            pytest.xfail(f"known failure ({self.case.path}: xfail.{self.model}): {known}\n{message}")
        raise CaseFailure(message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from domain_eval.run import CaseFailure, JudgeFailed

        if isinstance(excinfo.value, (CaseFailure, JudgeFailed)):
            return str(excinfo.value)
        from domain_eval.models import ModelLoadError

        if isinstance(excinfo.value, ModelLoadError):
            return f"domain-eval could not load the model: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.case.category}: {self.case.id}[{self.model}]"


class InvalidCaseItem(pytest.Item):
    """Stands in for a malformed file or case: fails with the validation message, so the
    other files still run and the problem is reported like any other failure."""

    def __init__(self, *, error: CaseError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return f"invalid case file: {excinfo.value}"

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"invalid cases in {self.path.name}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    if hasattr(config, "workerinput"):
        config.workeroutput[RESULT_PROPERTY] = json.dumps(run.worker_output())


class XdistHooks:
    """Registered only when pytest-xdist is installed, so ``-p no:xdist`` works."""

    def __init__(self, reporter: "DomainEvalReporter") -> None:
        self.reporter = reporter

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.reporter.expected.update(i for i in ids if _ITEM_ID.match(i))

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if RESULT_PROPERTY in output:
            self.reporter.worker_outputs.append(json.loads(output[RESULT_PROPERTY]))
        if error:
            self.reporter.worker_errors.append(str(error))


class DomainEvalReporter:
    """Controller-only: aggregates per-item rows (also from xdist workers), writes the report,
    gates against the baseline, and prints the comparison table."""

    def __init__(self, config: pytest.Config, options: Any) -> None:
        self.config = config
        self.options = options
        self.rows: dict[str, dict[str, Any]] = {}
        self.expected: set[str] = set()
        self.worker_outputs: list[dict[str, Any]] = []
        self.worker_errors: list[str] = []
        self.run_dir: Path | None = None
        self.gate: Any = None
        self.start = time.time()
        self.table: list[dict[str, Any]] = []
        self._case_cache: dict[str, dict[str, Case]] = {}

    def progress(self, message: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.config.get_verbosity() < 0:
            return
        # Messages come from inside a test, where output capture would swallow them.
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            tr.write_line(f"domain-eval: {message}", cyan=True)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.expected.update(it.nodeid for it in session.items if isinstance(it, CaseItem))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        match = _ITEM_ID.match(report.nodeid)
        if not match:
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                self.rows[report.nodeid] = json.loads(value)
                return
        if report.failed and report.nodeid not in self.rows:
            # The item died before producing a row (model failed to load, worker crashed...).
            crashed = report.when == "???" or "crashed" in str(report.longrepr)
            row = self._stub_row(report.nodeid, "missing" if crashed else "error")
            row["failures"] = [str(report.longrepr).strip().splitlines()[-1] if report.longrepr else "unknown error"]
            self.rows[report.nodeid] = row

    def _stub_row(self, nodeid: str, outcome: str) -> dict[str, Any]:
        match = _ITEM_ID.match(nodeid)
        assert match
        path, case_id, model = match["path"], match["case"], match["model"]
        case = self._case(path, case_id)
        return {
            "nodeid": nodeid, "key": f"{case_id}[{model}]", "case_id": case_id, "model": model,
            "category": case.category if case else Path(path).stem,
            "description": case.description if case else None, "expect": case.expect if case else None,
            "outcome": outcome, "failures": [], "samples": [], "judge_mean": None, "judge_errors": 0,
        }

    def _case(self, path: str, case_id: str) -> Case | None:
        if path not in self._case_cache:
            try:
                full = Path(path) if Path(path).is_absolute() else Path(str(self.config.rootpath)) / path
                self._case_cache[path] = {c.id: c for c in load_case_file(full).cases}
            except (CaseError, OSError):
                self._case_cache[path] = {}
        return self._case_cache[path].get(case_id)

    def _run_meta(self, session: pytest.Session) -> dict[str, Any]:
        import importlib.metadata as md
        import platform

        run = self.config.stash[RUN_KEY]
        outputs = list(self.worker_outputs)
        if not hasattr(self.config, "workerinput") and not self.config.pluginmanager.getplugin("dsession"):
            outputs.append(run.worker_output())
        per_model: dict[str, dict[str, float]] = {}
        hashes: dict[str, str] = {}
        judge_stats: list[dict[str, Any]] = []
        for out in outputs:
            hashes.update(out.get("adapter_hashes") or {})
            if out.get("judge_stats"):
                judge_stats.append(out["judge_stats"])
            for b in out.get("batches", []):
                m = per_model.setdefault(b["model"], {"generation_seconds": 0.0, "cases": 0, "new_tokens": 0})
                m["generation_seconds"] = round(m["generation_seconds"] + b["seconds"], 3)
                m["cases"] += b["cases"]
                m["new_tokens"] += b["new_tokens"]
        versions = {}
        for pkg in ("domain-eval", "torch", "transformers", "peft", "bitsandbytes", "pytest", "pytest-xdist"):
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = None
        return {
            "options": self.options.to_dict(),
            "models": {m: {"adapter_sha256": hashes.get(m)} for m in {r.get("model") for r in self.rows.values() if r.get("model")}},
            "base": self.options.base, "quant": self.options.quant,
            "kernels": sorted({o["kernel"] for o in outputs if o.get("kernel")}),
            "judge": {"name": self.options.judge, "model": self.options.judge_model, "stats": judge_stats},
            "seeds": [self.options.seed + i for i in range(self.options.samples)] if self.options.samples > 1 else ["greedy"],
            "per_model": per_model,
            "model_load_seconds": [o.get("load_seconds") for o in outputs if o.get("load_seconds")],
            "workers": len(outputs), "worker_errors": self.worker_errors,
            "wall_seconds": round(time.time() - self.start, 2),
            "python": platform.python_version(), "versions": versions,
            "args": list(self.config.invocation_params.args),
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            self.rows.clear()
            return
        for nodeid in sorted(self.expected - set(self.rows)):
            self.rows[nodeid] = self._stub_row(nodeid, "missing")
        if not self.rows:
            return
        from domain_eval import gating, report

        rows = list(self.rows.values())
        self.table = report.comparison_table(rows)
        meta = self._run_meta(session)
        if self.options.report:
            try:
                self.run_dir = report.write_report(rows, self.options.report_dir, meta)
            except OSError as exc:
                self.progress(f"could not write the report: {exc}")
        if self.options.write_baseline:
            gating.write_baseline(rows, self.options.write_baseline, meta)
        if self.options.baseline:
            try:
                baseline = gating.load_baseline(self.options.baseline)
            except (ValueError, OSError) as exc:
                self.gate = exc
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
                return
            self.gate = gating.compare(rows, baseline, self.options.max_regression)
            if self.gate.failed and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        missing = sum(1 for r in rows if r.get("outcome") == "missing")
        if missing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        from domain_eval import gating, report

        tr = terminalreporter
        tr.write_sep("=", "domain-eval comparison (mean judge score, 95% bootstrap CI)")
        tr.write_line(report.format_table(self.table, fmt="simple"))
        missing = [r["nodeid"] for r in self.rows.values() if r.get("outcome") == "missing"]
        if missing:
            tr.write_line(f"MISSING: {len(missing)} case(s) produced no result (worker crashed or run stopped early): " + ", ".join(missing[:10]), red=True)
        if self.run_dir:
            tr.write_line(f"report: {self.run_dir}/report.md  (latest: {Path(self.options.report_dir) / 'latest'})")
        if self.options.write_baseline:
            tr.write_line(f"baseline written: {self.options.write_baseline}")
        if isinstance(self.gate, Exception):
            tr.write_line(f"baseline gate: cannot read baseline: {self.gate}", red=True)
        elif self.gate is not None:
            tr.write_sep("-", "baseline gate " + ("FAILED" if self.gate.failed else "passed"), red=self.gate.failed, green=not self.gate.failed)
            tr.write_line(gating.format_gate(self.gate))
