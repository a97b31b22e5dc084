"""Where generations come from: this process (``local``) or an OpenAI-compatible server (``openai``).

An evaluation asks a backend for one model's generations for a batch of descriptions; each comes
back as a :class:`~domain_eval.generation.Generation` or a :class:`GenerationFailure` (a case
error, never a score). Parsing, the safety filter and ranking happen on this side for both, with
the same code, so a backend only changes where the text is written.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from domain_eval.config import BASE, EvalOptions, model_label

if TYPE_CHECKING:
    from domain_eval.generation import Generation

Progress = Callable[[str], None]
OnBatch = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationFailure:
    """Why one description got no generation (too long, a failed request...)."""

    reason: str


class Backend(Protocol):
    name: str
    adapter_hashes: dict[str, str]
    load_seconds: float | None

    def model_error(self, model: str) -> str | None:
        """Why ``model`` cannot generate here (connecting or loading at most once), or None."""

    def generate(self, model: str, descriptions: Sequence[str], seed: int | None,
                 on_batch: OnBatch | None = None) -> list[Generation | GenerationFailure]:
        """One result per description, in order; greedy when ``seed`` is None."""

    def identity(self) -> dict[str, Any]:
        """What generated: base, quantisation, kernel, device (for run metadata and compatibility)."""

    def served(self) -> dict[str, Any] | None:
        """For a remote backend, what the server reported (its models and version); else None."""

    def stats(self) -> dict[str, Any]:
        """Counters for run metadata (requests, retries...)."""

    def errors(self) -> dict[str, str]:
        """Models that cannot generate and why; ``"*"``: none can."""


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


def make_backend(options: EvalOptions, safety: Any, progress: Progress | None = None) -> Backend:
    if options.backend == "openai":
        from domain_eval.openai_backend import OpenAIBackend

        return OpenAIBackend(options, safety, progress)
    return LocalBackend(options, safety, progress)


class LocalBackend:
    """One base model in this process with every adapter attached; batched generation."""

    name = "local"

    def __init__(self, options: EvalOptions, safety: Any, progress: Progress | None = None) -> None:
        self.options = options
        self.safety = safety
        self._progress = progress or (lambda msg: None)
        self.generator: Any = None
        self._base_error: str | None = None
        self._adapter_errors: dict[str, str] = {}
        self.adapter_hashes: dict[str, str] = {}
        self.load_seconds: float | None = None

    def _load(self) -> Any:
        if self.generator is not None or self._base_error is not None:
            return self.generator
        from domain_eval.generation import DomainNameGenerator, GenerationConfig
        from domain_eval.models import adapter_hash, configure_threads

        configure_threads()
        start = time.perf_counter()
        options = self.options
        adapters = {model_label(m): m for m in options.models if m != BASE}
        self._progress(f"loading {options.base} ({options.quant}) with adapters: {', '.join(adapters) or 'none'}")
        try:
            gen = DomainNameGenerator(
                base_model=options.base, adapter=None, quant=options.quant, cpu_kernel=options.cpu_kernel,
                models_dir=options.models_dir, safety=self.safety,
                config=(GenerationConfig.picking if options.pick else GenerationConfig)(
                    n=options.n, batch_size=options.batch_size, max_new_tokens=options.max_new_tokens,
                    distinct_lines=bool(options.distinct_lines)),
            )
        except Exception as exc:  # noqa: BLE001 - reported once, for every item of every model
            self._base_error = f"base model {options.base!r} could not be loaded: {short_error(exc)}"
            self._progress(self._base_error)
            return None
        for label, spec in adapters.items():
            try:
                gen.add_adapter(label, spec, options.models_dir)
                self.adapter_hashes[label] = adapter_hash(gen.adapter_paths[label])
            except Exception as exc:  # noqa: BLE001 - this model's items error; the others run
                self._adapter_errors[label] = f"adapter {label!r} could not be loaded: {short_error(exc)}"
                self._progress(self._adapter_errors[label])
        self.load_seconds = time.perf_counter() - start
        self.generator = gen
        return gen

    def model_error(self, model: str) -> str | None:
        self._load()
        return self._base_error or self._adapter_errors.get(model)

    @property
    def prompt_token_limit(self) -> int:
        if self.options.max_prompt_tokens is not None:
            return self.options.max_prompt_tokens
        context = getattr(self.generator.model.config, "max_position_embeddings", None) or 2048
        return int(context) - self.options.max_new_tokens

    def generate(self, model: str, descriptions: Sequence[str], seed: int | None,
                 on_batch: OnBatch | None = None) -> list[Generation | GenerationFailure]:
        gen = self._load()
        limit = self.prompt_token_limit
        results: list[Generation | GenerationFailure | None] = [None] * len(descriptions)
        fits: list[int] = []
        for i, length in enumerate(gen.prompt_lengths(descriptions)):
            if length > limit:
                results[i] = GenerationFailure(
                    f"description too long: its prompt is {length:,} tokens, over the limit of {limit:,} "
                    f"(the model's context minus {self.options.max_new_tokens} tokens for the answer; "
                    "ini domain_eval_max_prompt_tokens sets it)")
            else:
                fits.append(i)
        if fits:
            gen.use(model)
            for i, generation in zip(fits, gen.generate([descriptions[i] for i in fits], seed=seed, on_batch=on_batch)):
                results[i] = generation
        return [r for r in results if r is not None]

    def identity(self) -> dict[str, Any]:
        if self.generator is None:
            return {}
        loaded = self.generator.loaded
        return {"base": loaded.base.canonical, "base_sha256": loaded.base.file_hash, "quant": loaded.quant,
                "kernel": loaded.kernel, "device": loaded.device, "notes": list(loaded.notes)}

    def served(self) -> dict[str, Any] | None:
        return None

    def stats(self) -> dict[str, Any]:
        return {}

    def errors(self) -> dict[str, str]:
        return {**({"*": self._base_error} if self._base_error else {}), **self._adapter_errors}
