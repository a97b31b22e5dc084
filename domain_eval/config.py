"""Evaluation options, parsed and checked before anything heavy loads.

Every mistake a user can make on the command line or in the ini (an unknown model, a corrupt
adapter, an unknown judge, a Groq judge without a key, a malformed number, a baseline that
cannot be compared, the same file to read and to overwrite) is found here, all at once, and
reported as one usage error naming the option. Nothing in this module imports torch.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from domain_eval.scoring import DEFAULT_MAX_REGRESSION

BASE = "base"
ALL = "all"


class ConfigError(ValueError):
    """One or more configuration problems; each line names the option or file."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


SAFETY_CHOICES = ("local", "groq")
BACKEND_CHOICES = ("local", "openai")


def parse_int(value: Any, option: str, minimum: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError([f"{option} must be an integer, got {value!r}"]) from None
    if minimum is not None and number < minimum:
        raise ConfigError([f"{option} must be >= {minimum}, got {number}"])
    return number


def parse_float(value: Any, option: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError([f"{option} must be a number, got {value!r}"]) from None
    if not math.isfinite(number):
        raise ConfigError([f"{option} must be a finite number, got {value!r}"])
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError([f"{option} must be {bounds}, got {number:g}"])
    return number


def parse_switch(value: Any, option: str) -> bool:
    """``on`` / ``off`` (also true/false, yes/no, 1/0) as a bool."""
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise ConfigError([f"{option} must be on or off, got {value!r}"])


def parse_auto_switch(value: Any, option: str) -> bool | None:
    """``auto`` as None (the option's default decides), else :func:`parse_switch`."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        return parse_switch(value, option)
    except ConfigError:
        raise ConfigError([f"{option} must be auto, on or off, got {value!r}"]) from None


@dataclass
class EvalOptions:
    """Every knob of an evaluation run; plain values so it serialises into run metadata.

    models: adapter names in models_dir, adapter folders, or "base"; resolved from --model.
    gate_models: models whose score thresholds fail the run; other models are reported
        (their threshold misses show as xfail). Safety expectations are always enforced.
    samples: generations per case; 1 means greedy decoding, more means seeded sampling
        with seeds seed, seed+1, ...
    max_prompt_tokens: longest prompt (system prompt + description) a case may have; None
        means the model's context minus max_new_tokens.
    pick: decode for quality (GenerationConfig.picking: pooled samples, degenerate names and extra
        TLD variants dropped; no judge). Off scores the model's first answer as it is.
    distinct_lines: greedy where a line may not go on as an earlier one (GenerationConfig.distinct_lines).
        None (auto) resolves to on for the local backend and off for a server, which decodes on its own.
    """

    models: list[str] = field(default_factory=list)
    models_dir: str = "models"
    base: str = "smollm2-135m"
    quant: str = "4bit"
    cpu_kernel: str = "dequantized"
    judge: str = "learned"
    judge_model: str | None = None
    judge_cache: str | None = None
    samples: int = 1
    seed: int = 0
    n: int = 5
    batch_size: int = 64
    max_new_tokens: int = 64
    max_prompt_tokens: int | None = None
    report_dir: str = "results"
    baseline: str | None = None
    write_baseline: str | None = None
    max_regression: float = DEFAULT_MAX_REGRESSION
    max_yield_drop: float = 0.1
    gate_models: list[str] | None = None  # None: every model is gated
    safety_policies: list[str] = field(default_factory=list)
    safety: str = "local"  # "local" (rules + classifier) or "groq" (local, then LLM moderation)
    safety_model: str | None = None
    report: bool = True
    backend: str = "local"  # "local" (this process loads the model) or "openai" (a server)
    backend_url: str | None = None
    backend_api_key: str | None = None  # the NAME of the environment variable holding the key
    backend_concurrency: int = 16
    backend_timeout: float = 120.0
    backend_retries: int = 4
    backend_models: dict[str, str] = field(default_factory=dict)  # model -> served model name
    pick: bool = False
    distinct_lines: bool | None = None

    def __post_init__(self) -> None:
        from domain_eval.models import CPU_KERNELS, QUANT_CHOICES  # cheap: no torch at import

        problems = []
        if self.samples < 1:
            problems.append(f"--samples must be >= 1, got {self.samples}")
        if not (math.isfinite(self.max_regression) and self.max_regression >= 0):
            problems.append(f"--max-regression must be a finite number >= 0, got {self.max_regression}")
        if not (math.isfinite(self.max_yield_drop) and 0 <= self.max_yield_drop <= 1):
            problems.append(f"--max-yield-drop must be between 0 and 1, got {self.max_yield_drop}")
        if self.quant not in QUANT_CHOICES:
            problems.append(f"--quant must be {' or '.join(QUANT_CHOICES)}, got {self.quant!r}")
        if self.safety not in SAFETY_CHOICES:
            problems.append(f"--safety must be {' or '.join(SAFETY_CHOICES)}, got {self.safety!r}")
        if self.cpu_kernel not in CPU_KERNELS:
            problems.append(f"--cpu-kernel must be {' or '.join(CPU_KERNELS)}, got {self.cpu_kernel!r}")
        problems += self._backend_problems()
        if problems:
            raise ConfigError(problems)

    def _backend_problems(self) -> list[str]:
        if self.backend not in BACKEND_CHOICES:
            return [f"--backend must be {' or '.join(BACKEND_CHOICES)}, got {self.backend!r}"]
        problems = []
        if self.backend == "openai" and not re.match(r"^https?://[^/\s]+", self.backend_url or ""):
            problems.append("--backend openai needs --backend-url, the server's API root such as http://127.0.0.1:8000/v1"
                            + (f" (got {self.backend_url!r})" if self.backend_url else ""))
        if self.backend_api_key is not None:
            # The option names a variable, so the key never lands in run.json's recorded arguments.
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.backend_api_key):
                problems.append("--backend-api-key takes the NAME of an environment variable that holds the key "
                                "(e.g. --backend-api-key VLLM_API_KEY), not the key itself")
            elif not os.environ.get(self.backend_api_key):
                problems.append(f"--backend-api-key {self.backend_api_key}: that environment variable is not set")
        if self.backend_concurrency < 1:
            problems.append(f"--backend-concurrency must be >= 1, got {self.backend_concurrency}")
        if not (math.isfinite(self.backend_timeout) and self.backend_timeout > 0):
            problems.append(f"--backend-timeout must be a number of seconds > 0, got {self.backend_timeout}")
        if self.pick and self.backend != "local":
            problems.append("--pick on runs with --backend local only: a server returns one answer per request")
        if self.distinct_lines and self.backend != "local":
            problems.append("--distinct-lines on runs with --backend local only: a server decodes on its own "
                            "(use --distinct-lines off or auto)")
        if self.distinct_lines is None:
            self.distinct_lines = self.backend == "local"
        if self.backend_retries < 0:
            problems.append(f"--backend-retries must be >= 0, got {self.backend_retries}")
        return problems

    def is_gated(self, model: str) -> bool:
        return self.gate_models is None or model in self.gate_models

    @property
    def seeds(self) -> list[int | None]:
        return [None] if self.samples == 1 else [self.seed + i for i in range(self.samples)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_safety_filter(options: EvalOptions) -> Any:
    """The run's safety filter: policy rules + the shipped classifier, plus LLM moderation with
    ``--safety groq``. Raises PolicyError / ClassifierError / ModerationError on bad setup."""
    from domain_eval.safety import SafetyFilter, default_filter

    if options.safety == "groq":
        from domain_eval.safety_llm import GroqModerator

        categories = default_filter(options.safety_policies).categories
        moderator = GroqModerator(categories, options.safety_model)
        moderator.require_api_key()
        return SafetyFilter(extra_policies=options.safety_policies, moderator=moderator)
    return default_filter(options.safety_policies)


def resolve_models(requested: Iterable[str], models_dir: str | Path) -> list[str]:
    """Expand comma lists, 'all' and the default (every adapter in models_dir, else base)."""
    from domain_eval.models import list_adapters

    names: list[str] = []
    for item in requested:
        names.extend(n.strip() for n in str(item).split(",") if n.strip())
    if not names:
        names = list_adapters(models_dir) or [BASE]
    out: list[str] = []
    for name in names:
        for expanded in (list_adapters(models_dir) if name == ALL else [name]):
            if expanded not in out:
                out.append(expanded)
    return out


def model_label(name: str) -> str:
    """The id used in test ids and tables: a folder path becomes its folder name."""
    return Path(name).name if os.sep in name or "/" in name else name


def check_models(options: EvalOptions) -> list[str]:
    """Every requested adapter exists, is intact and was trained on the requested base. With a
    server backend the server holds the adapters: :func:`domain_eval.openai_backend.check_server`
    asks it instead."""
    if options.backend != "local":
        return []
    from domain_eval.models import ModelLoadError, adapter_base_name, canonical_base_name, resolve_adapter, validate_adapter

    problems = []
    labels: dict[str, str] = {}
    for model in options.models:
        if model == BASE:
            continue
        label = model_label(model)
        if label in labels:
            problems.append(f"--model: {model!r} and {labels[label]!r} would both be called {label!r}")
        labels[label] = model
        try:
            path = resolve_adapter(model, options.models_dir)
            validate_adapter(path)
            recorded = adapter_base_name(path)
        except ModelLoadError as exc:
            problems.append(f"--model {model}: {exc}")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"--model {model}: cannot read its metadata ({exc})")
            continue
        if recorded and canonical_base_name(recorded) != canonical_base_name(options.base):
            problems.append(f"--model {model}: adapter {path} was trained on base {recorded!r}, "
                            f"but --base is {options.base!r}; pass --base {recorded}")
    return problems


def check_report_paths(options: EvalOptions) -> list[str]:
    problems = []
    if options.write_baseline:
        out = Path(options.write_baseline)
        if options.baseline and out.resolve() == Path(options.baseline).resolve():
            problems.append(f"--write-baseline {out} is the --baseline being gated against: the run would overwrite "
                            "the baseline it is compared with. Write to another file, then replace it after review")
        elif out.is_dir():
            problems.append(f"--write-baseline {out} is a directory; give a file path such as {out / 'baseline.json'}")
        elif out.parent.exists() and not out.parent.is_dir():
            problems.append(f"--write-baseline {out}: {out.parent} is not a directory")
    return problems
