"""A fake OpenAI-compatible server for the LLM planner's tests: real HTTP on 127.0.0.1 (an ephemeral port), served from
a background thread, answering ``POST /v1/chat/completions`` with scripted replies and recording every request body, and ``GET /v1/models``
with its one model.

    with FakeOpenAI(replies=[{"content": '{"explanation": "ok"}'}]) as server:
        LLMPlanner(LLMSettings(base_url=server.base_url)).plan(...)
        server.requests[0]["response_format"]

A reply is a dict: ``content`` and ``finish_reason`` (default "stop") for a completion, ``delay_s`` to wait before
answering (timeout tests; cut short when the server closes), ``status`` for an HTTP error. Once the script runs out the
server answers HTTP 500 "no scripted reply left".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FakeOpenAI:
    def __init__(self, replies: Iterable[dict[str, Any]] = (), model: str = "fake-model") -> None:
        self.replies = list(replies)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first (use it as a context manager)"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = False
        server.block_on_close = True  # server_close joins the handler threads: nothing outlives the test
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def next_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            return self.replies.pop(0) if self.replies else {"status": 500, "message": "no scripted reply left"}

    def completion(self, reply: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI chat.completion body for a scripted reply."""
        content = reply.get("content", "")
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reply.get("finish_reason", "stop")}
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": max(1, len(content) // 4),
                "total_tokens": 100 + max(1, len(content) // 4),
            },
        }


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            self._send(200, {"object": "list", "data": [{"id": fake.model, "object": "model", "owned_by": "fake"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            reply = fake.next_reply(json.loads(raw or b"{}"))
            if reply.get("delay_s") and fake.closing.wait(float(reply["delay_s"])):
                self.close_connection = True
                return  # the server is closing: the client gave up long ago
            if "status" in reply:
                self._send(int(reply["status"]), {"error": {"message": reply.get("message", "scripted error"), "type": "server_error"}})
            else:
                self._send(200, fake.completion(reply))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client hung up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
