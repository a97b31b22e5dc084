"""pytest plugin: YAML cases x model fixtures, assertions, per-category report, baseline gating.

Thin by design: options and hooks live here. Options are parsed and checked in
:mod:`domain_eval.config` (all at once, before any model loads), items are produced by
:mod:`domain_eval.run` and judged by :mod:`domain_eval.scoring`, and the controller-side
:class:`domain_eval.session.EvalSession` owns rows, metadata, gating and writing. Importing this
module must not import torch, so ``pytest --help`` and ``--collect-only`` stay fast.

An item's **setup** produces its verdict (load the model once, generate with its batch, judge):
anything that prevents a verdict (a model that cannot load, a description too long for the
context, a judge error) is a pytest *error*. Its **call** asserts the verdict: a *failure* is a
finding about the model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from domain_eval.cases import Case, CaseDefaults, CaseError, load_case_file
from domain_eval.config import ConfigError, EvalOptions, model_label, parse_auto_switch, parse_float, parse_int, parse_switch
from domain_eval.project import ProjectConfig, case_roots, find_project
from domain_eval.scoring import DEFAULT_MAX_REGRESSION, SAFETY_FILTER, CaseResult, format_failure
from domain_eval.session import ITEM_ID, RESULT_PROPERTY, EvalSession

RUN_KEY = pytest.StashKey["Any"]()
SESSION_KEY = pytest.StashKey[EvalSession]()
BASELINE_KEY = pytest.StashKey["dict | None"]()
_OWNERS_KEY = pytest.StashKey[dict]()  # case id -> file that defined it first
PROJECT_KEY = pytest.StashKey[ProjectConfig]()
ROOTS_KEY = pytest.StashKey["list[Path]"]()  # active case folders; empty: the plugin is inert

# (option, ini name, ini type, default, help)
_OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("--model", "domain_eval_models", "args", [], "models to evaluate: comma list, repeatable. A name in models/, an adapter folder, 'base' (no adapter) or 'all'. Default: every adapter in models/."),
    ("--base", "domain_eval_base", "string", "smollm2-135m", "base model: embedded 'smollm2-135m', an HF id or a local folder."),
    ("--quant", "domain_eval_quant", "string", "4bit", "4bit (NF4 via bitsandbytes) or none."),
    ("--cpu-kernel", "domain_eval_cpu_kernel", "string", "dequantized", "4-bit on CPU: 'dequantized' (NF4 weights dequantised once, fp32: same output batched or alone) or 'bnb' (bitsandbytes' kernels: faster, output depends on the batch)."),
    ("--models-dir", "domain_eval_models_dir", "string", "models", "where named adapters live."),
    ("--judge", "domain_eval_judge", "string", "learned", "learned (default: offline, trained on blind ratings of real outputs), heuristic (the earlier formula; embedding model from domain-eval[semantic]), heuristic-lexical (no embeddings) or groq (needs GROQ_API_KEY or a recorded --judge-cache)."),
    ("--judge-model", "domain_eval_judge_model", "string", None, "LLM judge model (groq default: openai/gpt-oss-120b)."),
    ("--judge-cache", "domain_eval_judge_cache", "string", None, "SQLite judge cache; replays recorded judgements offline."),
    ("--samples", "domain_eval_samples", "string", "1", "generations per case: 1 = greedy, N > 1 = seeded sampling."),
    ("--seed", "domain_eval_seed", "string", "0", "first seed for sampled generations."),
    ("--report-dir", "domain_eval_report_dir", "string", "results", "where results/<run-id>/ and results/latest are written."),
    ("--baseline", "domain_eval_baseline", "string", None, "baseline JSON to gate against (paired on case ids)."),
    ("--max-regression", "domain_eval_max_regression", "string", str(DEFAULT_MAX_REGRESSION), "largest allowed drop of a group's mean slot score (1-10) against --baseline."),
    ("--max-yield-drop", "domain_eval_max_yield_drop", "string", "0.1", "largest allowed drop of a group's mean yield (0-1) against --baseline."),
    ("--write-baseline", "domain_eval_write_baseline", "string", None, "write this run's per-case scores as a baseline JSON."),
    ("--gate-model", "domain_eval_gate_models", "args", None, "models whose score thresholds fail the run (comma list, repeatable); others are reported as xfail. Default: all."),
    ("--safety-policy", "domain_eval_safety_policies", "args", [], "extra safety policy YAML (repeatable)."),
    ("--safety", "domain_eval_safety", "string", "local", "safety layers: local (policy rules, then the shipped classifier) or groq (local, then an LLM moderation model; needs GROQ_API_KEY, and a failed request is a case error)."),
    ("--safety-model", "domain_eval_safety_model", "string", None, "moderation model for --safety groq (default: meta-llama/llama-guard-4-12b)."),
    ("--distinct-lines", "domain_eval_distinct_lines", "string", "auto", "greedy decoding where a line may not go on as an earlier line after its first token, so a model cannot repeat a name or restate it under another TLD (judge-free, per row). auto (default) = on with --backend local, off with a server (it decodes on its own); off = the plain greedy answer."),
    ("--pick", "domain_eval_pick", "string", "off", "decoding for quality: on = when an answer holds fewer than n usable names, pool the names of 4 seeded samples, and drop degenerate names and extra TLD variants (no judge takes part; local backend only); off = score the model's first answer as it is."),
    ("--backend", "domain_eval_backend", "string", "local", "where generations come from: local (this process loads the base and adapters) or openai (an OpenAI-compatible server at --backend-url: domain-eval serve, vLLM, llama.cpp, TGI, SGLang; workers then stay light clients)."),
    ("--backend-url", "domain_eval_backend_url", "string", None, "the server's API root for --backend openai, e.g. http://127.0.0.1:8765/v1."),
    ("--backend-api-key", "domain_eval_backend_api_key", "string", None, "NAME of the environment variable holding the server's API key (default: OPENAI_API_KEY, when set). The key is sent, never written."),
    ("--backend-concurrency", "domain_eval_backend_concurrency", "string", "16", "most requests in flight per process (--backend openai)."),
    ("--backend-timeout", "domain_eval_backend_timeout", "string", "120", "seconds to wait for an answer before a request is retried (--backend openai)."),
    ("--backend-retries", "domain_eval_backend_retries", "string", "4", "retries after a 429, a 5xx, a timeout or a dropped connection, with exponential backoff honouring retry-after; then the case errors (--backend openai)."),
]
_INI_ONLY: list[tuple[str, str, Any, str]] = [
    ("domain_eval_min_score", "string", str(CaseDefaults.min_score), "min slot score (1-10) when neither case nor file sets one"),
    ("domain_eval_min_valid", "string", str(CaseDefaults.min_valid), "min distinct valid names when neither case nor file sets one"),
    ("domain_eval_max_prompt_tokens", "string", "auto", "longest prompt a case may have; auto = the model's context minus max_new_tokens"),
    ("domain_eval_batch_size", "string", "64", "most prompts per generation batch (long prompts go in smaller ones)"),
    ("domain_eval_max_new_tokens", "string", "64", "max generated tokens per case"),
    ("domain_eval_n", "string", "5", "domains requested per case"),
    ("domain_eval_backend_models", "args", [], "--backend openai: served model names, MODEL=SERVED_NAME ... (default: the same name)"),
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
    group.addoption("--domain-eval", dest="domain_eval_enable", action="store_true",
                    help="evaluate the YAML cases under the paths given (also switched on by --model, or by the ini "
                         "naming case folders: domain_eval_cases = cases). Without any of these the plugin does nothing.")
    group.addoption("--no-report", dest="domain_eval_no_report", action="store_true", help="do not write results/ (still prints the table)")
    for ini, ini_type, default, help_text in _INI_ONLY:
        parser.addini(ini, help_text, type=ini_type, default=default)
    parser.addini("domain_eval_cases", "case directories: every .yaml under them is a case file (an invalid one is an error, "
                  "never skipped)", type="paths", default=[])


def _project(config: pytest.Config) -> ProjectConfig:
    if PROJECT_KEY not in config.stash:
        config.stash[PROJECT_KEY] = find_project(config)
    return config.stash[PROJECT_KEY]


def _ini(config: pytest.Config, name: str, kind: str = "string") -> Any:
    """An ini value from the project's configuration (see :mod:`domain_eval.project`)."""
    return _project(config).getini(config, name, kind)


_ARGS_INI = {ini for _, ini, kind, _, _ in _OPTIONS if kind == "args"}


def _value(config: pytest.Config, opt: str, ini: str) -> Any:
    value = config.getoption(_dest(opt))
    return value if value is not None else _ini(config, ini, "args" if ini in _ARGS_INI else "string")


def _comma_list(values: Any) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def case_defaults(config: pytest.Config) -> CaseDefaults:
    return CaseDefaults(min_score=parse_float(_ini(config, "domain_eval_min_score"), "ini domain_eval_min_score", 1, 10),
                        min_valid=parse_int(_ini(config, "domain_eval_min_valid"), "ini domain_eval_min_valid", 0))


def build_options(config: pytest.Config) -> EvalOptions:
    """Parse every option; a :class:`ConfigError` lists every malformed value, each by name."""
    from domain_eval.config import resolve_models

    get = lambda opt, ini: _value(config, opt, ini)  # noqa: E731
    # Paths on the command line are relative to where pytest was started, like any CLI path
    # (and like `domain-eval generate --models-dir`); ini paths to the project's config file.
    root = _project(config).root
    invocation = Path(str(config.invocation_params.dir))

    def path_option(opt: str, ini: str) -> Path:
        given = config.getoption(_dest(opt))
        path = Path(given if given is not None else _ini(config, ini)).expanduser()
        return path if path.is_absolute() else (invocation if given is not None else root) / path

    def optional_path(opt: str, ini: str) -> str | None:
        given = config.getoption(_dest(opt))
        if not (given if given is not None else _ini(config, ini)):
            return None
        return str(path_option(opt, ini))

    models_dir = path_option("--models-dir", "domain_eval_models_dir")
    gate = config.getoption(_dest("--gate-model"))
    gate_models = _comma_list(gate if gate is not None else _ini(config, "domain_eval_gate_models", "args")) or None
    problems: list[str] = []

    def parsed(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None

    max_prompt = str(_ini(config, "domain_eval_max_prompt_tokens")).strip()
    values = dict(
        samples=parsed(parse_int, get("--samples", "domain_eval_samples"), "--samples", 1),
        seed=parsed(parse_int, get("--seed", "domain_eval_seed"), "--seed"),
        n=parsed(parse_int, _ini(config, "domain_eval_n"), "ini domain_eval_n", 1),
        batch_size=parsed(parse_int, _ini(config, "domain_eval_batch_size"), "ini domain_eval_batch_size", 1),
        max_new_tokens=parsed(parse_int, _ini(config, "domain_eval_max_new_tokens"), "ini domain_eval_max_new_tokens", 1),
        max_prompt_tokens=None if max_prompt == "auto" else parsed(parse_int, max_prompt, "ini domain_eval_max_prompt_tokens", 1),
        max_regression=parsed(parse_float, get("--max-regression", "domain_eval_max_regression"), "--max-regression", 0),
        max_yield_drop=parsed(parse_float, get("--max-yield-drop", "domain_eval_max_yield_drop"), "--max-yield-drop", 0, 1),
        backend_concurrency=parsed(parse_int, get("--backend-concurrency", "domain_eval_backend_concurrency"), "--backend-concurrency", 1),
        backend_timeout=parsed(parse_float, get("--backend-timeout", "domain_eval_backend_timeout"), "--backend-timeout", 0.001),
        backend_retries=parsed(parse_int, get("--backend-retries", "domain_eval_backend_retries"), "--backend-retries", 0),
        backend_models=parsed(_model_map, _ini(config, "domain_eval_backend_models", "args")),
        pick=parsed(parse_switch, get("--pick", "domain_eval_pick"), "--pick"),
        distinct_lines=parsed(parse_auto_switch, get("--distinct-lines", "domain_eval_distinct_lines"), "--distinct-lines"),
    )
    parsed(case_defaults, config)
    if problems:
        raise ConfigError(problems)
    return EvalOptions(
        models=resolve_models(_comma_list(config.getoption(_dest("--model")) or _ini(config, "domain_eval_models", "args")), models_dir),
        models_dir=str(models_dir),
        base=get("--base", "domain_eval_base"),
        quant=get("--quant", "domain_eval_quant"),
        cpu_kernel=get("--cpu-kernel", "domain_eval_cpu_kernel"),
        judge=get("--judge", "domain_eval_judge"),
        judge_model=get("--judge-model", "domain_eval_judge_model") or None,
        judge_cache=optional_path("--judge-cache", "domain_eval_judge_cache"),
        report_dir=str(path_option("--report-dir", "domain_eval_report_dir")),
        baseline=optional_path("--baseline", "domain_eval_baseline"),
        write_baseline=optional_path("--write-baseline", "domain_eval_write_baseline"),
        gate_models=gate_models,
        safety_policies=_comma_list(get("--safety-policy", "domain_eval_safety_policies")),
        safety=get("--safety", "domain_eval_safety"),
        safety_model=get("--safety-model", "domain_eval_safety_model") or None,
        report=not config.getoption("domain_eval_no_report"),
        backend=get("--backend", "domain_eval_backend"),
        backend_url=get("--backend-url", "domain_eval_backend_url") or None,
        backend_api_key=get("--backend-api-key", "domain_eval_backend_api_key") or None,
        **values,
    )


def _model_map(entries: Any) -> dict[str, str]:
    from domain_eval.openai_backend import parse_model_map

    try:
        return parse_model_map(_comma_list(entries))
    except ValueError as exc:
        raise ConfigError([f"ini domain_eval_backend_models: {exc}"]) from None


def _make_judge(config: pytest.Config, options: EvalOptions) -> Any:
    judge = config.hook.pytest_domain_eval_make_judge(config=config, options=options)
    if judge is not None:
        return judge
    from domain_eval.judges import make_judge
    from domain_eval.judges.base import check_judge_config

    check_judge_config(options.judge, options.judge_cache)
    return make_judge(options.judge, model=options.judge_model, cache_path=options.judge_cache)


def _check_safety(options: EvalOptions) -> list[str]:
    from domain_eval.config import make_safety_filter
    from domain_eval.safety import PolicyError
    from domain_eval.safety_llm import ModerationError
    from domain_eval.safety_model import ClassifierError

    try:
        make_safety_filter(options)
    except PolicyError as exc:
        return [f"--safety-policy: {exc}"]
    except (ClassifierError, ModerationError) as exc:
        return [f"--safety {options.safety}: {exc}"]
    return []


def _preflight(config: pytest.Config) -> tuple[EvalOptions, Any, dict | None]:
    """Options, judge and baseline, or one usage error listing every problem: before any model loads."""
    from domain_eval import gating
    from domain_eval.config import check_models, check_report_paths
    from domain_eval.judges import JudgeError
    from domain_eval.run import judge_identity
    from domain_eval.session import compat_of

    options = build_options(config)
    problems = check_models(options) + check_report_paths(options)
    problems += _check_safety(options)
    if options.backend == "openai" and not hasattr(config, "workerinput"):
        from domain_eval.openai_backend import check_server

        problems += check_server(options)  # once, in the controller: is it up, does it serve every model?
    judge = None
    try:
        judge = _make_judge(config, options)
    except JudgeError as exc:
        problems.append(f"--judge {options.judge}: {exc}")
    baseline = None
    if options.baseline:
        try:
            baseline = gating.load_baseline(options.baseline)
        except gating.BaselineError as exc:
            problems.append(f"--baseline: {exc}")
        if baseline is not None and judge is not None:
            differ = gating.incompatibilities(baseline["compat"], compat_of(options, judge_identity(judge), {}), partial=True)
            if differ:
                problems.append(f"--baseline {options.baseline} cannot be compared with this run; what its scores depend on differs:\n  "
                                + "\n  ".join(differ))
    if problems:
        raise ConfigError(problems)
    return options, judge, baseline


def _active_roots(config: pytest.Config) -> list[Path]:
    if ROOTS_KEY not in config.stash:
        explicit = bool(config.getoption("domain_eval_enable")) or config.getoption(_dest("--model")) is not None
        config.stash[ROOTS_KEY] = case_roots(config, _project(config), explicit)
    return config.stash[ROOTS_KEY]


def pytest_configure(config: pytest.Config) -> None:
    from domain_eval.run import EvalRun, judge_identity

    if config.option.help or config.option.version or not _active_roots(config):
        return  # inert: not asked for (see domain_eval.project)
    config.addinivalue_line("markers", "domain_eval: a domain-eval YAML case (added automatically)")
    try:
        options, judge, baseline = _preflight(config)
    except ConfigError as exc:
        raise pytest.UsageError("domain-eval:\n  " + "\n  ".join(exc.problems)) from None
    session: EvalSession | None = None
    if not hasattr(config, "workerinput"):
        session = EvalSession(config, options, judge_identity(judge), baseline)
        config.stash[SESSION_KEY] = session
        config.pluginmanager.register(session, "domain-eval-session")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(session), "domain-eval-xdist")
            _prefer_file_scheduling(config)
    run = EvalRun(options, judge, progress=session.progress if session else None)
    config.stash[RUN_KEY] = run
    config.stash[BASELINE_KEY] = baseline
    if session is not None:
        session.local_output = run.worker_output  # used when no xdist workers ran


def _prefer_file_scheduling(config: pytest.Config) -> None:
    """Send each case file (a category) to one worker, so it generates the category's cases in
    one batch per model instead of splitting batches across workers. ``--dist`` given explicitly wins."""
    args = config.invocation_params.args
    explicit = any(a == "--dist" or a.startswith("--dist=") or a == "-d" for a in args)
    if getattr(config.option, "dist", "no") == "load" and not explicit:
        config.option.dist = "loadfile"


def _is_case_file(file_path: Path, config: pytest.Config) -> bool:
    """Every YAML under an active case folder is a case file (one that does not load is an
    error, never skipped); YAML anywhere else is not ours."""
    resolved = file_path.resolve()
    return any(resolved.is_relative_to(root) for root in _active_roots(config))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml") or RUN_KEY not in parent.config.stash:
        return None
    if not _is_case_file(file_path, parent.config):
        return None
    return CaseFile.from_parent(parent, path=file_path)


class CaseFile(pytest.File):
    """One YAML file of cases; yields one item per case and model (one per case for cases that
    must be blocked: the safety filter decides those before any model runs)."""

    def collect(self) -> Iterator[pytest.Item]:
        config = self.config
        run = config.stash[RUN_KEY]
        try:
            loaded = load_case_file(self.path, case_defaults(config))
        except CaseError as exc:
            yield InvalidCaseItem.from_parent(self, name="<invalid-file>", error=exc)
            return
        owners: dict[str, str] = config.stash.setdefault(_OWNERS_KEY, {})
        for case in loaded.cases:
            owner = owners.setdefault(case.id, str(self.path))
            if owner != str(self.path):
                err = CaseError(self.path, f"duplicate id, already defined in {owner}", case.id, "id")
                yield InvalidCaseItem.from_parent(self, name=f"{case.id}<duplicate>", error=err)
                continue
            models = [SAFETY_FILTER] if case.expect == "blocked" else [model_label(m) for m in run.options.models]
            for label in models:
                item = CaseItem.from_parent(self, name=f"{case.id}[{label}]", case=case, model=label)
                # -k matches names and extra_keyword_matches: tags and the category become words
                # of the item, so `-k near-miss` or `-k multilingual` select what they say.
                item.extra_keyword_matches.update((case.category, label, *case.tags))
                item.add_marker(pytest.mark.domain_eval)
                yield item


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.model = model
        self.result: CaseResult | None = None

    def _batch(self) -> list[Case]:
        """Cases of this model that this process will run, generated together.

        An xdist worker only learns its files one by one, so it batches per file; a single
        process runs every file and batches across them (bigger batches, fewer passes).
        """
        items = getattr(self.session, "items", None) or [self]
        same_file = hasattr(self.config, "workerinput")
        return [it.case for it in items if isinstance(it, CaseItem) and it.model == self.model
                and (it.path == self.path or not same_file)]

    def setup(self) -> None:
        run = self.config.stash[RUN_KEY]
        result = run.evaluate(self.case, self.model, batch=self._batch)
        result.nodeid = self.nodeid
        self.result = result
        self.user_properties.append((RESULT_PROPERTY, json.dumps(result.to_dict(), ensure_ascii=False, sort_keys=True)))
        if result.outcome == "error":
            pytest.fail(format_failure(result), pytrace=False)

    def runtest(self) -> None:
        from domain_eval.run import CaseFailure

        result = self.result
        assert result is not None
        if result.outcome == "passed":
            return
        message = format_failure(result)
        if result.threshold_only and not result.gated:
            pytest.xfail(f"below threshold; model '{self.model}' is reported, not gated\n{message}")
        known = self.case.known_failure(self.model)
        if known:
            pytest.xfail(f"known failure ({self.case.path}: xfail.{self.model}): {known}\n{message}")
        from domain_eval.gating import failed_in_baseline

        if result.threshold_only and failed_in_baseline(self.config.stash.get(BASELINE_KEY, None), result.key):
            # A ratchet: misses the baseline already had are reported, new ones fail the run.
            pytest.xfail(f"below threshold, as in the baseline; only new misses fail\n{message}")
        raise CaseFailure(message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from domain_eval.run import CaseFailure

        # An xfail carries the same readable message; pytest's traceback repr of it cost ~0.3 s
        # an item (measured: 6.1 s of 51 s on 20 xfails), for text nobody reads.
        if isinstance(excinfo.value, (CaseFailure, pytest.xfail.Exception)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.case.category}: {self.case.id}[{self.model}]"


class InvalidCaseItem(pytest.Item):
    """Stands in for a malformed file or case: errors with the validation message, so the other
    files still run and the problem is counted in the report like any other error."""

    def __init__(self, *, error: CaseError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def setup(self) -> None:
        case_id = "<invalid-file>" if self.name == "<invalid-file>" else (self.error.case_id or self.name)
        from domain_eval.cases import file_category

        row = CaseResult(key=self.nodeid, case_id=case_id, category=file_category(self.path, self.error.case_id),
                         model="-", description=None, expect=None, outcome="invalid", failures=[str(self.error)],
                         nodeid=self.nodeid)
        self.user_properties.append((RESULT_PROPERTY, json.dumps(row.to_dict(), ensure_ascii=False, sort_keys=True)))
        pytest.fail(f"invalid case file: {self.error}", pytrace=False)

    def runtest(self) -> None:  # pragma: no cover - setup always fails
        raise self.error

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"invalid cases in {self.path.name}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None and hasattr(session.config, "workerinput"):
        session.config.workeroutput[RESULT_PROPERTY] = json.dumps(run.worker_output())


class XdistHooks:
    """Registered only when pytest-xdist is installed, so ``-p no:xdist`` works."""

    def __init__(self, session: EvalSession) -> None:
        self.session = session

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.session.expected.update(i for i in ids if ITEM_ID.match(i))

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if RESULT_PROPERTY in output:
            self.session.add_worker_output(json.loads(output[RESULT_PROPERTY]))
        if error:
            self.session.worker_errors.append(str(error))
