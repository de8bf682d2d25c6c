"""A fake OpenAI-compatible server for the LLM planner's tests: real HTTP on 127.0.0.1 (an ephemeral port), served from
a background thread, answering ``POST /v1/chat/completions`` with scripted replies and recording every request body, and ``GET /v1/models``
with its one model.

    with FakeOpenAI(replies=[{"content": '{"explanation": "ok"}'}]) as server:
        LLMPlanner(LLMSettings(base_url=server.base_url)).plan(...)
        server.requests[0]["response_format"]

A reply is a dict: ``content`` and ``finish_reason`` (default "stop") for a completion, ``delay_s`` to wait before
answering (timeout tests; cut short when the server closes), ``status`` for an HTTP error. Once the script runs out the
server answers HTTP 500 "no scripted reply left".

A reply with ``tool_calls`` (a list of ``{"name", "arguments"}``, arguments a dict or the raw JSON text) answers with
an assistant message that calls tools, finish reason "tool_calls" unless given; ``content`` may be None (JSON null),
and ``function_call: True`` adds the legacy ``function_call`` field of the first call. ``vllm_tool_reply`` and
``llama_cpp_tool_reply`` script the shapes those two servers give a request with a named ``tool_choice``.
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
        message: dict[str, Any] = {"role": "assistant", "content": content}
        calls = [
            {
                "id": call.get("id", f"call-fake-{len(self.requests)}-{index}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": _arguments_text(call.get("arguments", {}))},
            }
            for index, call in enumerate(reply.get("tool_calls") or [])
        ]
        if calls:
            message["tool_calls"] = calls
            if reply.get("function_call"):
                message["function_call"] = dict(calls[0]["function"])
        size = len(content or "") + sum(len(call["function"]["arguments"]) for call in calls)
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.get("finish_reason", "tool_calls" if calls else "stop")}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": max(1, size // 4),
                "total_tokens": 100 + max(1, size // 4),
            },
        }


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def vllm_tool_reply(name: str, arguments: dict[str, Any] | str, finish_reason: str = "stop") -> dict[str, Any]:
    """vLLM's answer to a named ``tool_choice`` (vllm/entrypoints/openai/serving_chat.py): empty content (null in newer
    releases), one tool call holding the schema-constrained text, and the generation's own finish reason ("stop", or
    "length" when cut off)."""
    call = {"name": name, "arguments": arguments, "id": "chatcmpl-tool-fake"}
    return {"content": "", "tool_calls": [call], "finish_reason": finish_reason}


def llama_cpp_tool_reply(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """llama-cpp-python's answer to a named ``tool_choice`` (llama_chat_format._convert_completion_to_chat_function):
    null content, the call both as ``tool_calls`` and as the legacy ``function_call``, finish reason "tool_calls"
    even when the generation was cut off."""
    call = {"name": name, "arguments": arguments, "id": f"call__0_{name}_cmpl-fake"}
    return {"content": None, "tool_calls": [call], "function_call": True}


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
