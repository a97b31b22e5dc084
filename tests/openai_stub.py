"""A scriptable OpenAI-compatible completions server for tests: a real HTTP server on 127.0.0.1.

``GET /v1/models`` lists ``models``; ``POST /v1/completions`` answers with ``respond(request)``,
which returns a :class:`tests.groq_stub.StubResponse` (status, body, headers, delay) or a dict
(a 200 JSON body). Every request is recorded. Used to show the ``openai`` backend's retries,
backoff, timeouts and case errors against a server that misbehaves on purpose.
"""
from __future__ import annotations

import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union

from tests.groq_stub import RecordedRequest, StubResponse, error_response

Reply = Union[StubResponse, dict]


def completion(text: str, model: str = "base", completion_tokens: int = 7) -> dict[str, Any]:
    """A 200 body in the real ``text_completion`` shape."""
    return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": completion_tokens, "total_tokens": 50 + completion_tokens}}


class CompletionsStub:
    def __init__(self, respond: Callable[[RecordedRequest], Reply], models: tuple[str, ...] = ("base", "a1", "a2")) -> None:
        self.respond = respond
        self.models = models
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/completions"]

    def __enter__(self) -> "CompletionsStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                rec = RecordedRequest(self.command, self.path.split("?", 1)[0],
                                      {k.lower(): v for k, v in self.headers.items()},
                                      self.rfile.read(length) if length else b"", time.time())
                with stub._lock:
                    stub.requests.append(rec)
                if rec.method == "GET" and rec.path == "/v1/models":
                    reply: Reply = {"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]}
                elif rec.method == "POST" and rec.path == "/v1/completions":
                    try:
                        reply = stub.respond(rec)
                    except Exception as exc:  # a broken script shows as a 500 the test will see
                        reply = error_response(500, f"stub failed: {exc!r}")
                else:
                    reply = error_response(404, f"no route {rec.method} {rec.path}")
                resp = reply if isinstance(reply, StubResponse) else StubResponse(200, reply)
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                payload, ctype = resp.encoded()
                try:
                    self.send_response(resp.status)
                    for k, v in {"content-type": ctype, **resp.headers}.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.send_header("connection", "close")
                    self.close_connection = True
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
