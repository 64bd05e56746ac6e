"""A real chat-completions HTTP server on 127.0.0.1 for offline tests of `vip symptoms generate`.

It plays back a scripted queue of responses in the shapes real servers give and records every
request (path, headers, JSON body) so tests can assert on prompts and on where the key went.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Scripted:
    """One scripted reply."""

    status: int = 200  # HTTP status
    content: str | None = None  # assistant text (for 200 replies)
    body: object = None  # exact JSON body instead of the chat-completions shape
    delay: float = 0.0  # seconds to wait before answering
    headers: dict = field(default_factory=dict)  # extra headers, e.g. Retry-After
    forever: bool = False  # stay at the head of the queue
    echo_auth: bool = False  # replace "{AUTH}" ("{PROXY_AUTH}") with the Authorization (Proxy-Authorization) header
    trickle_s: float = 0.0  # send the body one byte at a time, this many seconds apart
    no_length: bool = False  # send no Content-Length (the body ends when the connection closes)
    text: str | None = None  # exact body text instead of JSON (an event stream, an HTML page)
    content_type: str = "application/json"


def chat_body(content: str, model: str = "test-model") -> dict:
    """A chat-completions response body as OpenAI, vLLM, Ollama and llama.cpp send it."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class ScriptedLLM:
    """The server (port 0: any free port); `url` is its OpenAI-compatible root (.../v1)."""

    def __init__(self, port: int = 0):
        self.queue: deque[Scripted] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def answer(self, content: str, **options) -> "ScriptedLLM":
        """Queue a 200 reply with `content` as the assistant text."""
        self.queue.append(Scripted(content=content, **options))
        return self

    def fail(self, status: int, message: str = "error", **options) -> "ScriptedLLM":
        """Queue an error reply with an OpenAI-style error body."""
        self.queue.append(Scripted(status=status, body=error_body(message), **options))
        return self

    def raw(self, body: object, status: int = 200, **options) -> "ScriptedLLM":
        """Queue a reply with an exact JSON body."""
        self.queue.append(Scripted(status=status, body=body, **options))
        return self

    def send_text(self, text: str, content_type: str = "text/event-stream", **options) -> "ScriptedLLM":
        """Queue a 200 reply of exactly `text` (an event stream of chat-completion chunks, an HTML page)."""
        self.queue.append(Scripted(text=text, content_type=content_type, **options))
        return self

    def start(self) -> "ScriptedLLM":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Scripted:
        with self._lock:
            if not self.queue:
                return Scripted(status=500, body=error_body("test server: no scripted reply left"))
            return self.queue[0] if self.queue[0].forever else self.queue.popleft()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                server.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(raw or b"{}"),
                        "raw": raw.decode("utf-8"),
                    }
                )
                reply = server._next()
                time.sleep(reply.delay)
                body = reply.body if reply.body is not None else chat_body(reply.content or "")
                text = reply.text if reply.text is not None else json.dumps(body)
                if reply.echo_auth:
                    for mark, header in (("{AUTH}", "Authorization"), ("{PROXY_AUTH}", "Proxy-Authorization")):
                        text = text.replace(mark, json.dumps(self.headers.get(header, ""))[1:-1])
                data = text.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    if not reply.no_length:
                        self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if reply.trickle_s:
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.trickle_s)
                    else:
                        self.wfile.write(data)
                except OSError:  # the client gave up (timeout tests)
                    pass

            def log_message(self, *args):
                pass

        return Handler


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
