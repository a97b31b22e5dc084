"""The ``openai`` backend: generations from any OpenAI-compatible server (``domain-eval serve``,
vLLM with LoRA adapters, llama.cpp's server, TGI, SGLang) through ``POST /v1/completions``.

A light client: the prompt is the base's own chat template rendered by
:func:`domain_eval.prompts.render_prompt` (no tokenizer, no torch), requests run in a bounded
thread pool, and 429 / 5xx / timeouts / dropped connections are retried with exponential backoff
that honours ``retry-after``. A request that still fails becomes that case's error: nothing is
scored for it.
"""
from __future__ import annotations

import email.utils
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from domain_eval.backends import GenerationFailure, OnBatch, Progress, short_error
from domain_eval.config import EvalOptions, model_label
from domain_eval.generation import Generation, GenerationConfig, rank_domains

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


class RequestFailed(RuntimeError):
    """A request that failed for good (after any retries); the message says how."""


@dataclass(frozen=True)
class ClientConfig:
    """base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``. api_key is never printed."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 0.5  # first retry waits about this long, doubling each time
    max_backoff: float = 30.0  # longest wait, also for a server's retry-after


@dataclass(frozen=True)
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str | None


def retry_after_seconds(value: str | None) -> float | None:
    """A ``retry-after`` header as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(response: Any) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
        message = message or body.get("message") or body.get("detail")
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or response.reason_phrase).strip()[:300]


class OpenAIClient:
    """A thread-safe client for the endpoints this project uses, with retries and counters."""

    def __init__(self, config: ClientConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.config = config
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout, headers=headers)
        self._lock = threading.Lock()
        self.counts = {"requests": 0, "retries": 0, "failed": 0, "waited_seconds": 0.0}

    def close(self) -> None:
        self._http.close()

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self.counts[key] = round(self.counts[key] + amount, 3)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.max_backoff)
        # Full jitter: concurrent clients that failed together do not retry together.
        return min(self.config.max_backoff, self.config.backoff * 2 ** attempt) * (0.5 + random.random() / 2)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON of a 2xx answer; raises :class:`RequestFailed` otherwise."""
        import httpx

        where = f"{method} {path}"
        for attempt in range(self.config.max_retries + 1):
            self._count("requests")
            retry_after = None
            try:
                response = self._http.request(method, path.lstrip("/"), json=body)
            except httpx.TimeoutException:
                why = f"no answer within {self.config.timeout:g} s"
            except httpx.TransportError as exc:
                why = short_error(exc)
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    why = f"HTTP {response.status_code}: {_error_message(response)}"
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                elif response.status_code >= 400:
                    self._count("failed")
                    raise RequestFailed(f"{where}: HTTP {response.status_code}: {_error_message(response)}")
                else:
                    try:
                        return response.json()
                    except ValueError:
                        self._count("failed")
                        raise RequestFailed(f"{where}: malformed answer (not JSON): {response.text[:120]!r}") from None
            if attempt == self.config.max_retries:
                self._count("failed")
                raise RequestFailed(f"{where}: {why} (gave up after {attempt + 1} attempts)")
            wait = self._delay(attempt, retry_after)
            self._count("retries")
            self._count("waited_seconds", wait)
            self._sleep(wait)
        raise AssertionError("unreachable")

    def server_version(self) -> str | None:
        """``GET /version`` beside the API root (vLLM and domain-eval serve answer it; others may not).
        Metadata only, so one plain attempt."""
        import httpx

        root = self.config.base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        try:
            response = self._http.get(root + "/version")
            version = response.json().get("version") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return str(version) if version is not None else None

    def models(self) -> list[dict[str, Any]]:
        body = self.request("GET", "models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise RequestFailed(f"GET models: malformed answer (no list of models with ids): {str(body)[:120]!r}")
        return data

    def complete(self, model: str, prompt: str, max_tokens: int, temperature: float, top_p: float,
                 seed: int | None) -> Completion:
        body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                                "top_p": top_p, "n": 1,
                                # The prompt already holds the chat template's own tokens; vLLM
                                # would otherwise add BOS in front (others ignore the field).
                                "add_special_tokens": False}
        if seed is not None:
            body["seed"] = seed
        answer = self.request("POST", "completions", body)
        try:
            choice = answer["choices"][0]
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            usage = answer.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            self._count("failed")
            raise RequestFailed(f"POST completions: malformed answer ({short_error(exc)}): {str(answer)[:120]!r}") from None
        return Completion(text, tokens, choice.get("finish_reason"))


def parse_model_map(entries: Sequence[str]) -> dict[str, str]:
    """``["v3=lora-v3", ...]`` -> ``{"v3": "lora-v3"}``; raises ValueError naming a bad entry."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, served = str(entry).partition("=")
        if not sep or not name.strip() or not served.strip():
            raise ValueError(f"{entry!r} is not MODEL=SERVED_NAME")
        out[name.strip()] = served.strip()
    return out


def client_config(options: EvalOptions) -> ClientConfig:
    import os

    env = options.backend_api_key or DEFAULT_API_KEY_ENV
    return ClientConfig(base_url=str(options.backend_url), api_key=os.environ.get(env) or None,
                        timeout=options.backend_timeout, max_retries=options.backend_retries)


def check_server(options: EvalOptions) -> list[str]:
    """Configuration problems found by asking the server which models it serves (before any case runs)."""
    client = OpenAIClient(client_config(options))
    try:
        served = {m["id"] for m in client.models()}
    except RequestFailed as exc:
        return [f"--backend-url {options.backend_url}: {exc}"]
    finally:
        client.close()
    problems = []
    for model in options.models:
        label = model_label(model)
        name = options.backend_models.get(label, label)
        if name not in served:
            problems.append(f"--model {label}: the server at {options.backend_url} does not serve {name!r} "
                            f"(it serves: {', '.join(sorted(served)) or 'nothing'}); map names with ini "
                            f"domain_eval_backend_models = {label}=SERVED_NAME")
    return problems


class OpenAIBackend:
    """Generations from an OpenAI-compatible server; parsing and ranking stay on this side."""

    name = "openai"

    def __init__(self, options: EvalOptions, safety: Any, progress: Progress | None = None) -> None:
        self.options = options
        self.safety = safety
        self._progress = progress or (lambda msg: None)
        self.sampling = GenerationConfig()  # temperature and top_p for seeded samples, as local
        self.adapter_hashes: dict[str, str] = {}
        self.load_seconds: float | None = None
        self._client: OpenAIClient | None = None
        self._template: Any = None
        self._served: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str] = {}
        self._version: str | None = None

    def served_name(self, model: str) -> str:
        return self.options.backend_models.get(model, model)

    def _connect(self) -> None:
        if self._client is not None:
            return
        from domain_eval.chat_template import ChatTemplateError, for_base

        start = time.perf_counter()
        self._client = OpenAIClient(client_config(self.options))
        self._progress(f"using the server at {self.options.backend_url}")
        try:
            self._template = for_base(self.options.base)
            self._served = {m["id"]: m for m in self._client.models()}
            self._version = self._client.server_version()
        except (ChatTemplateError, RequestFailed) as exc:
            self._errors["*"] = f"backend openai ({self.options.backend_url}): {exc}"
            return
        for model in self.options.models:
            label = model_label(model)
            reported = self._served.get(self.served_name(label), {}).get("domain_eval")
            if isinstance(reported, dict) and reported.get("adapter_sha256"):
                self.adapter_hashes[label] = str(reported["adapter_sha256"])  # what the server says it loaded
            if self.served_name(label) not in self._served:
                self._errors[label] = (f"the server does not serve {self.served_name(label)!r} "
                                       f"(it serves: {', '.join(sorted(self._served))})")
        self.load_seconds = time.perf_counter() - start

    def model_error(self, model: str) -> str | None:
        self._connect()
        return self._errors.get("*") or self._errors.get(model)

    def _one(self, model: str, description: str, prompt: str, seed: int | None) -> Generation | GenerationFailure:
        assert self._client is not None
        greedy = seed is None
        try:
            completion = self._client.complete(self.served_name(model), prompt, self.options.max_new_tokens,
                                               0.0 if greedy else self.sampling.temperature,
                                               1.0 if greedy else self.sampling.top_p, seed)
        except RequestFailed as exc:
            return GenerationFailure(f"backend openai: {exc}")
        domains, dropped = rank_domains(completion.text, description, self.options.n, self.safety)
        return Generation(description, completion.text, domains, dropped, completion.completion_tokens, model, seed)

    def generate(self, model: str, descriptions: Sequence[str], seed: int | None,
                 on_batch: OnBatch | None = None) -> list[Generation | GenerationFailure]:
        from domain_eval.prompts import render_prompt

        self._connect()
        prompts = [render_prompt(self._template, d, self.options.n) for d in descriptions]
        results: list[Generation | GenerationFailure | None] = [None] * len(descriptions)
        with ThreadPoolExecutor(max_workers=self.options.backend_concurrency, thread_name_prefix="domain-eval-openai") as pool:
            futures = {pool.submit(self._one, model, d, p, seed): i for i, (d, p) in enumerate(zip(descriptions, prompts))}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if on_batch and done % 16 == 0:
                    on_batch(done, len(descriptions))
        return [r for r in results if r is not None]

    def identity(self) -> dict[str, Any]:
        from domain_eval.models import canonical_base_name

        if self._client is None:
            return {}
        # What the server says it runs (domain-eval serve reports it; vLLM does not): never guessed.
        reported = next((m.get("domain_eval") for m in self._served.values() if isinstance(m.get("domain_eval"), dict)), {})
        return {"base": canonical_base_name(self.options.base), "base_sha256": reported.get("base_sha256"),
                "quant": reported.get("quant"), "kernel": reported.get("kernel"), "device": reported.get("device")}

    def served(self) -> dict[str, Any] | None:
        if self._client is None:
            return None
        cards = {}
        for model in self.options.models:
            label = model_label(model)
            card = self._served.get(self.served_name(label)) or {}
            cards[label] = {k: card.get(k) for k in ("id", "root", "parent", "owned_by")}
            if isinstance(card.get("domain_eval"), dict):
                cards[label]["adapter_sha256"] = card["domain_eval"].get("adapter_sha256")
        return {"url": self.options.backend_url, "models": cards, "server_models": sorted(self._served),
                "server_version": self._version}

    def stats(self) -> dict[str, Any]:
        return dict(self._client.counts) if self._client is not None else {}

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

