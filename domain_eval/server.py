"""``domain-eval serve``: an OpenAI-compatible server for this project's base and adapters.

``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` on FastAPI + uvicorn. One base
is loaded with every adapter attached; the request's ``model`` picks the adapter (``base``: none).
Concurrent requests are queued and a single worker thread decodes them in batches, grouped by
adapter and decoding settings, with the same decoding as local evaluation
(:meth:`domain_eval.generation.DomainNameGenerator.decode_tokens`). Greedy requests share
batches (with the default dequantised 4-bit kernel a row's text does not depend on its batch);
a sampled request runs alone with its own seed, so its text does not depend on its neighbours.

Errors are OpenAI-style JSON: an unknown model is a 404, a malformed body or a prompt over the
context a 400, and a description the safety filter blocks is refused (400) with the reason.
"""
from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain_eval.generation import BASE_ADAPTER
from domain_eval.models import DEFAULT_BASE


@dataclass
class ServeConfig:
    """What ``domain-eval serve`` loads and how it batches.

    max_batch: most requests decoded together. batch_window_s: how long the worker waits for
    more requests after the first one arrives (a few ms buys batching under concurrent load).
    """

    models: list[str] = field(default_factory=list)
    base: str = DEFAULT_BASE
    models_dir: str = "models"
    quant: str = "4bit"
    cpu_kernel: str = "dequantized"
    max_batch: int = 32
    batch_window_s: float = 0.01
    safety: bool = True


@dataclass
class DecodeJob:
    adapter: str
    prompt_ids: list[int]
    max_tokens: int
    greedy: bool
    temperature: float
    top_p: float
    seed: int
    future: Future = field(default_factory=Future)

    def group(self) -> tuple[Any, ...]:
        if self.greedy:
            return (self.adapter, self.max_tokens, "greedy")
        return (self.adapter, id(self))  # sampled: alone, seeded by its own request


class BatchingEngine:
    """Queues decode jobs and runs them on one thread, in batches (torch is not re-entrant here)."""

    def __init__(self, generator: Any, max_batch: int = 32, window_s: float = 0.01) -> None:
        self.generator = generator
        self.max_batch = max_batch
        self.window_s = window_s
        self.batches = 0
        self.jobs = 0
        self._queue: queue.Queue[DecodeJob] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="domain-eval-decode", daemon=True)
        self._thread.start()

    def submit(self, job: DecodeJob) -> Future:
        self._queue.put(job)
        return job.future

    def _take(self) -> list[DecodeJob]:
        jobs = [self._queue.get()]
        deadline = time.monotonic() + self.window_s
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                jobs.append(self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _run(self) -> None:
        while True:
            groups: dict[tuple[Any, ...], list[DecodeJob]] = {}
            for job in self._take():
                groups.setdefault(job.group(), []).append(job)
            for jobs in groups.values():
                self._decode(jobs)

    def _decode(self, jobs: list[DecodeJob]) -> None:
        first = jobs[0]
        try:
            self.generator.use(first.adapter)
            rows = self.generator.decode_tokens([j.prompt_ids for j in jobs], greedy=first.greedy, seed=first.seed,
                                                max_new_tokens=first.max_tokens, temperature=first.temperature,
                                                top_p=first.top_p)
        except Exception as exc:  # noqa: BLE001 - every waiting request hears about it, the server lives on
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.jobs += len(jobs)
        for job, row in zip(jobs, rows):
            job.future.set_result(row)


class APIError(Exception):
    """An OpenAI-style error answer."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code = code if code is not None else status

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class Service:
    """The server's state: the generator, the engine, the safety filter and the model cards."""

    def __init__(self, config: ServeConfig, generator: Any, safety: Any = None) -> None:
        from domain_eval import __version__
        from domain_eval.models import adapter_hash

        self.config = config
        self.generator = generator
        self.tokenizer = generator.tokenizer
        self.safety = safety
        self.engine = BatchingEngine(generator, config.max_batch, config.batch_window_s)
        self.version = __version__
        self.context = int(getattr(generator.model.config, "max_position_embeddings", 2048))
        loaded = generator.loaded
        identity = {"version": __version__, "base": loaded.base.canonical, "base_sha256": loaded.base.file_hash,
                    "quant": loaded.quant, "kernel": loaded.kernel, "device": loaded.device}
        created = int(time.time())
        self.cards: dict[str, dict[str, Any]] = {
            BASE_ADAPTER: {"id": BASE_ADAPTER, "object": "model", "created": created, "owned_by": "domain-eval",
                           "root": loaded.base.canonical, "parent": None, "max_model_len": self.context,
                           "domain_eval": identity}}
        for name, path in generator.adapter_paths.items():
            self.cards[name] = {"id": name, "object": "model", "created": created, "owned_by": "domain-eval",
                                "root": str(path), "parent": BASE_ADAPTER, "max_model_len": self.context,
                                "domain_eval": {**identity, "adapter_sha256": adapter_hash(path)}}

    # ------------------------------------------------------------------ checks
    def check_model(self, model: str) -> None:
        if model not in self.cards:
            raise APIError(404, f"The model `{model}` does not exist (served: {', '.join(self.cards)}).",
                           "NotFoundError", "model", "model_not_found")

    def check_safety(self, text: str) -> None:
        if self.safety is None:
            return
        verdict = self.safety.check(text)
        if verdict.blocked:
            raise APIError(400, f"refused by the safety filter: {verdict.reason}", "invalid_request_error", "prompt",
                           "content_policy_violation")

    def tokens(self, text: str, add_special_tokens: bool, max_tokens: int) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids
        if not ids:
            raise APIError(400, "the prompt is empty", param="prompt")
        if len(ids) + max_tokens > self.context:
            raise APIError(400, f"This model's maximum context length is {self.context} tokens. However, you requested "
                           f"{len(ids) + max_tokens} tokens ({len(ids)} in the prompt, {max_tokens} in the completion). "
                           "Please reduce the prompt or max_tokens.", param="prompt", code="context_length_exceeded")
        return ids

    # ------------------------------------------------------------------ decoding
    async def run(self, model: str, ids: list[int], request: Any) -> list[tuple[str, str, int]]:
        """``n`` choices for one prompt: (text, finish_reason, completion tokens)."""
        greedy = request.temperature == 0
        base_seed = request.seed if request.seed is not None else random.randrange(2**31)
        futures = [self.engine.submit(DecodeJob(model, ids, request.max_tokens, greedy, request.temperature or 1.0,
                                                request.top_p, base_seed + i)) for i in range(request.n)]
        rows = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        eos = self.tokenizer.eos_token_id
        out = []
        for row in rows:
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            text, stopped = _apply_stop(text, stop)
            finish = "stop" if stopped or (row and row[-1] == eos) else "length"
            out.append((text, finish, len(row)))
        return out


def prompt_description(prompt: str) -> str:
    """The business description inside a prompt built by :mod:`domain_eval.prompts`, else the
    whole prompt: what the safety filter is asked about."""
    from domain_eval.prompts import USER_PREFIX

    anchor = USER_PREFIX.split("{n}")[-1]  # " domain names for this business: "
    marker = prompt.rfind(anchor)
    if marker < 0:
        return prompt
    rest = prompt[marker + len(anchor):]
    for end in ("<|", "</s>", "\n"):
        if end in rest:
            rest = rest[: rest.index(end)]
    return rest.strip() or prompt


# Request bodies (module level: FastAPI resolves annotations in the module's namespace).
class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other servers' fields (logprobs, user...) are not errors
    model: str
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = None
    stop: str | list[str] | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]
    add_special_tokens: bool = True  # vLLM's extension, same default


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def create_app(service: Service) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title="domain-eval", version=service.version,
                  description="OpenAI-compatible completions from domain-eval's base model and LoRA adapters.")

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = "body" if first.get("type") == "json_invalid" else (".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body")
        return JSONResponse(APIError(400, f"malformed request: {where}: {first.get('msg', 'invalid')}", param=where,
                                     code="invalid_request").body(), status_code=400)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": service.version}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": list(service.cards.values())}

    def _id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:24]}"

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> dict[str, Any]:
        service.check_model(request.model)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts:
            raise APIError(400, "the prompt is empty", param="prompt")
        encoded = []
        for prompt in prompts:
            service.check_safety(prompt_description(prompt))
            encoded.append(service.tokens(prompt, request.add_special_tokens, request.max_tokens))
        answers = await asyncio.gather(*(service.run(request.model, ids, request) for ids in encoded))
        choices, used = [], 0
        for answer in answers:
            for text, finish, count in answer:
                choices.append({"index": len(choices), "text": text, "logprobs": None, "finish_reason": finish})
                used += count
        prompt_tokens = sum(len(ids) for ids in encoded)
        return {"id": _id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": request.model,
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": prompt_tokens + used}}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        service.check_model(request.model)
        users = [m.content for m in request.messages if m.role == "user"]
        if users:
            service.check_safety(users[-1])
        if request.max_completion_tokens:
            request.max_tokens = request.max_completion_tokens
        text = service.tokenizer.apply_chat_template([m.model_dump() for m in request.messages], tokenize=False,
                                                     add_generation_prompt=True)
        ids = service.tokens(text, False, request.max_tokens)  # the template already holds its special tokens
        answer = await service.run(request.model, ids, request)
        used = sum(count for _, _, count in answer)
        return {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": request.model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                            for i, (text, finish, _) in enumerate(answer)],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": used, "total_tokens": len(ids) + used}}

    return app


def load_service(config: ServeConfig, progress: Any = None) -> Service:
    """Load the base and adapters (adapter names or folders) and build the service."""
    from domain_eval.config import BASE, model_label
    from domain_eval.generation import DomainNameGenerator
    from domain_eval.models import configure_threads
    from domain_eval.safety import default_filter

    configure_threads()
    adapters = {model_label(m): m for m in config.models if m != BASE}
    generator = DomainNameGenerator(base_model=config.base, adapter=adapters or None, quant=config.quant,
                                    cpu_kernel=config.cpu_kernel, models_dir=config.models_dir, progress=progress,
                                    safety=None)
    return Service(config, generator, default_filter() if config.safety else None)
