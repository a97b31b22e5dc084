"""A scriptable OpenAI/Groq chat-completions server for tests (no network, no patching).

It is a real HTTP server on 127.0.0.1 (``http.server`` in a daemon thread), so the real
``groq`` client, with its real retry/error handling, talks to it::

    from tests.groq_stub import ChatCompletionsStub, StubResponse, chat_completion, error_response

    with ChatCompletionsStub([
        error_response(429, "rate limited", code="rate_limit_exceeded", headers={"retry-after": "1"}),
        chat_completion('{"scores": []}'),
    ]) as stub:
        client = groq.Groq(api_key="test-key", base_url=stub.base_url, max_retries=0)
        ...
        assert stub.requests[0].json["model"] == "openai/gpt-oss-120b"

Responses are consumed in order from a queue; an item may be a :class:`StubResponse` (see
also :func:`chat_completion`, :func:`error_response` and :func:`raw_body` for a body sent
verbatim), a plain ``dict`` (sent as a 200 JSON body) or a callable
``f(request: RecordedRequest) -> StubResponse | dict`` for replies that depend on the
request. When the queue is empty the ``default`` (a response or callable) answers; without
one the stub answers 500 so that a test that sends too many requests fails loudly.
Every request is recorded (method, path, headers, raw body, parsed JSON).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Union

__all__ = [
    "ChatCompletionsStub",
    "RecordedRequest",
    "StubResponse",
    "chat_completion",
    "error_response",
    "raw_body",
    "CHAT_PATH",
]

CHAT_PATH = "/openai/v1/chat/completions"


@dataclass
class StubResponse:
    """One scripted HTTP response. ``body``: dict/list (sent as JSON), str or bytes.
    ``delay_s`` sleeps before answering (to exercise client timeouts)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(self.body if self.body is not None else {}).encode("utf-8"), "application/json"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    @property
    def messages(self) -> list[dict]:
        data = self.json
        return data.get("messages", []) if isinstance(data, dict) else []

    @property
    def user_text(self) -> str:
        """Concatenated content of the user messages."""
        return "\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "user")


Scripted = Union[StubResponse, dict, Callable[[RecordedRequest], Union[StubResponse, dict]]]


def chat_completion(content: str | None, *, model: str = "openai/gpt-oss-120b", finish_reason: str = "stop",
                    status: int = 200, headers: dict[str, str] | None = None, prompt_tokens: int = 100,
                    completion_tokens: int = 50) -> StubResponse:
    """A 200 response in the real chat-completion shape carrying ``content``."""
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_stub",
        "x_groq": {"id": f"req_{uuid.uuid4().hex[:20]}"},
    }
    return StubResponse(status=status, body=body, headers=dict(headers or {}))


def error_response(status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                   headers: dict[str, str] | None = None) -> StubResponse:
    """An error in Groq's shape: ``{"error": {"message", "type", "code"}}``."""
    err: dict[str, Any] = {"message": message, "type": type}
    if code is not None:
        err["code"] = code
    return StubResponse(status=status, body={"error": err}, headers=dict(headers or {}))


def raw_body(body: str | bytes, *, status: int = 200, content_type: str = "application/json") -> StubResponse:
    """A response whose body is sent verbatim with ``content_type``: e.g. a 200 with a body that
    is not JSON (``raw_body("<html>busy</html>", content_type="text/html")``, or a truncated
    ``raw_body('{"id": "chatcmpl-')`` that claims to be JSON) or JSON that is not a chat
    completion (``raw_body('{"ok": true}')``)."""
    return StubResponse(status=status, body=body if isinstance(body, bytes) else body.encode("utf-8"),
                        headers={"content-type": content_type})


class ChatCompletionsStub:
    """Scriptable chat-completions server on ``127.0.0.1:<free port>``.

    ``base_url`` (``http://127.0.0.1:PORT``) is what ``groq.Groq(base_url=...)`` or
    ``GROQ_BASE_URL`` expects; the client then POSTs to ``/openai/v1/chat/completions``.
    ``path`` changes the served path (e.g. ``/v1/chat/completions`` for an OpenAI client).
    """

    def __init__(self, responses: Iterable[Scripted] = (), *, default: Scripted | None = None,
                 path: str = CHAT_PATH) -> None:
        self._queue: deque[Scripted] = deque(responses)
        self.default = default
        self.path = path
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- scripting --------------------------------------------------------------------------
    def enqueue(self, *responses: Scripted) -> "ChatCompletionsStub":
        with self._lock:
            self._queue.extend(responses)
        return self

    @property
    def pending(self) -> int:
        """Scripted responses not yet consumed."""
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == self.path and r.method == "POST"]

    def _next(self, request: RecordedRequest) -> StubResponse:
        with self._lock:
            item = self._queue.popleft() if self._queue else self.default
        if item is None:
            return error_response(500, "groq stub: no scripted response left", type="stub_error")
        if callable(item):
            item = item(request)
        if isinstance(item, dict):
            item = StubResponse(200, item)
        return item

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("stub server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def start(self) -> "ChatCompletionsStub":
        if self._server is not None:
            return self
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                rec = RecordedRequest(self.command, self.path.split("?", 1)[0],
                                      {k.lower(): v for k, v in self.headers.items()}, raw, time.time())
                with stub._lock:
                    stub.requests.append(rec)
                if rec.path != stub.path or self.command != "POST":
                    resp = error_response(404, f"Unknown request URL: {self.command} {rec.path}",
                                          code="unknown_url")
                else:
                    try:
                        resp = stub._next(rec)
                    except Exception as exc:  # a broken scripted callable -> 500, visible in the test
                        resp = error_response(500, f"groq stub handler failed: {exc!r}", type="stub_error")
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                payload, ctype = resp.encoded()
                self.send_response(resp.status)
                headers = {"content-type": ctype, **{k.lower(): v for k, v in resp.headers.items()}}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                # One request per connection, so that stop() really ends the conversation:
                # no pooled keep-alive connection survives the listening socket.
                self.send_header("connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)

            do_POST = _handle
            do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="groq-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket: later connections are refused."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "ChatCompletionsStub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
