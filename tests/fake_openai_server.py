"""A small OpenAI-compatible ``/chat/completions`` server for tests, with scriptable faults.

    with FakeOpenAIServer(faults=["500", "429:0.1", None]) as server:
        model = EndpointChatModel(server.base_url, "fake")

Answers come from ``responder(request_body) -> message``; the default one calls the first
offered tool whose name appears in the last user message, with ``key=value`` pairs from that
message as arguments, and otherwise answers ``"echo: <message>"``.

Faults are chosen per request by ``faults``: a list consumed one per request (``None`` or
``"ok"``: answer normally; an empty list: no more faults), or a function
``(request_index, request_body) -> fault | None`` (key faults on the body, not the index,
when requests run concurrently). A fault is a :class:`Fault` or one of these strings:

    "500", "503", "400", ...   that HTTP status with an error body ("401" echoes the key sent)
    "429" / "429:2.5"          429, with ``Retry-After: 2.5`` when given
    "sleep:1.5"                wait 1.5 s, then answer normally (a client timeout, if shorter)
    "malformed_json"           200 with a body that is not JSON
    "truncated"                200 whose body stops halfway, then the connection closes
    "disconnect"               close the connection without any answer
    "bad_tool_calls"           200 whose tool_calls is an object, not a list
    "no_choices"               200 with ``"choices": []``
    "trickle:0.2"              200, the body sent a few bytes at a time, 0.2 s apart
    "slow_headers:0.2"         200, its status line and headers sent a byte at a time, 0.2 s apart
    "huge"                     200 declaring a 1 GB body, then sending bytes until the client hangs up
    "redirect:URL"             307 to URL (another host or port, say)
    "gzip"                     200, the body gzip-compressed (``Content-Encoding: gzip``), asked for or not

A responder may also return ``bytes``: the body of a 200 answer, sent as it is.

``GET /v1/models`` lists ``models`` (default None: answered 404, a server that lists none; bytes:
sent as they are), as a server is asked when ``--model`` is left out; ``models_slowly`` (seconds) sends that answer's
headers a byte at a time.

Every wait is bounded and wakes at :meth:`stop`, so teardown never hangs.
"""

from __future__ import annotations

import json
import gzip
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_SLEEP_S = 30.0  # upper bound on any scripted wait
_ARGUMENT = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")


@dataclass(frozen=True)
class Fault:
    kind: str  # "ok", "http", "sleep", "malformed_json", "truncated", "disconnect", "bad_tool_calls", "no_choices"
    status: int = 200
    retry_after: str | None = None
    seconds: float = 0.0
    location: str | None = None

    @classmethod
    def parse(cls, spec: "Fault | str | None") -> "Fault":
        if isinstance(spec, Fault):
            return spec
        if spec is None or spec == "ok":
            return cls("ok")
        head, _, arg = str(spec).partition(":")
        if head.isdigit():
            return cls("http", status=int(head), retry_after=arg or None)
        if head == "sleep":
            return cls("sleep", seconds=min(float(arg or 1.0), MAX_SLEEP_S))
        if head == "redirect":
            return cls("redirect", location=arg)
        if head in ("trickle", "slow_headers"):
            return cls(head, seconds=min(float(arg or 0.2), MAX_SLEEP_S))
        if head in ("malformed_json", "truncated", "disconnect", "bad_tool_calls", "no_choices", "huge", "gzip"):
            return cls(head)
        raise ValueError(f"unknown fault {spec!r}; see the fake_openai_server module docstring")


@dataclass
class ReceivedRequest:
    index: int
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON, or the raw text when it is not JSON
    fault: Fault = field(default_factory=lambda: Fault("ok"))


def last_user_message(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def default_responder(body: dict) -> dict:
    """Call the first offered tool named in the last user message, else echo it as text."""
    text = last_user_message(body)
    for tool in body.get("tools") or []:
        name = tool.get("function", {}).get("name", "")
        if name and name in text:
            arguments = {}
            for key, raw in _ARGUMENT.findall(text):
                try:
                    arguments[key] = json.loads(raw)
                except json.JSONDecodeError:
                    arguments[key] = raw
            call = {"id": "call_0", "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": f"echo: {text}"}


def completion(message: dict, model: str = "fake") -> dict:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


FaultScript = Sequence["Fault | str | None"] | Callable[[int, Any], "Fault | str | None"]


class FakeOpenAIServer:
    """Serves on 127.0.0.1 at a free port from :meth:`start` until :meth:`stop`."""

    def __init__(self, responder: Callable[[dict], dict] = default_responder,
                 faults: FaultScript | None = None) -> None:
        self.responder = responder
        self.models: list[str] | bytes | None = None  # what GET /v1/models lists (None: 404; bytes: sent raw)
        self.models_slowly: float | None = None  # seconds between the bytes of that answer's headers
        self.faults = faults  # the property below copies a list, so the caller's stays intact
        self.requests: list[ReceivedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> FaultScript | None:
        return self._faults

    @faults.setter
    def faults(self, script: FaultScript | None) -> None:
        self._faults = script if script is None or callable(script) else list(script)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() or use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> "FakeOpenAIServer":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes any scripted sleep
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self, faults: FaultScript | None = None,
              responder: Callable[[dict], dict] = default_responder) -> None:
        """Forget the requests received and script new behaviour."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0
            self.faults = faults
            self.responder = responder

    def _record(self, path: str, headers: dict[str, str], body: Any) -> ReceivedRequest:
        with self._lock:
            index = len(self.requests)
            if callable(self._faults):
                spec = self._faults(index, body)
            else:
                spec = self._faults.pop(0) if self._faults else None
            request = ReceivedRequest(index, path, headers, body, Fault.parse(spec))
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return request

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    _in_flight = False  # this request counts in fake.in_flight

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models") and isinstance(self.fake.models, bytes):
            return self._send_bytes(200, self.fake.models)
        if self.path.rstrip("/").endswith("/models") and self.fake.models is not None:
            listed = {"object": "list", "data": [{"id": m, "object": "model"} for m in self.fake.models]}
            if self.fake.models_slowly is not None:
                return self._send_headers_slowly(json.dumps(listed).encode(), self.fake.models_slowly)
            return self._send(200, listed)
        return self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        request = self.fake._record(self.path, dict(self.headers.items()), body)
        self._in_flight = True
        try:
            self._answer(request)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            pass
        finally:
            self._leave_flight()

    def _leave_flight(self) -> None:
        # Before the answer goes out: once the client has it, it may send its next request.
        if self._in_flight:
            self._in_flight = False
            self.fake._done()

    def _answer(self, request: ReceivedRequest) -> None:
        fault = request.fault
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if not isinstance(request.body, dict):
            return self._send(400, {"error": {"message": "body is not a JSON object"}})
        if fault.kind == "sleep" and self.fake._stopping.wait(fault.seconds):
            return  # stopping: drop the request
        if fault.kind == "disconnect":
            self.close_connection = True
            return
        if fault.kind == "http":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            message = f"scripted HTTP {fault.status}"
            if fault.status == 401:  # like a careless server, echo the credential it was sent
                message = f"Incorrect API key provided: {self.headers.get('Authorization', '')}"
            return self._send(fault.status, {"error": {"message": message}}, extra)
        if fault.kind == "redirect":
            return self._send(307, {"error": {"message": "moved"}}, {"Location": fault.location})
        if fault.kind == "malformed_json":
            return self._send_bytes(200, b'{"choices": [{"message": {"content": "unterminated')
        if fault.kind == "huge":
            return self._send_forever()
        message = self.fake.responder(request.body)
        if isinstance(message, bytes):
            return self._send_bytes(200, message)
        payload = completion(message, str(request.body.get("model", "fake")))
        if fault.kind == "bad_tool_calls":
            payload["choices"][0]["message"]["tool_calls"] = {"name": "not-a-list"}
        elif fault.kind == "no_choices":
            payload["choices"] = []
        data = json.dumps(payload).encode()
        if fault.kind == "trickle":
            return self._send_slowly(data, fault.seconds)
        if fault.kind == "slow_headers":
            return self._send_headers_slowly(data, fault.seconds)
        if fault.kind == "gzip":
            return self._send_bytes(200, gzip.compress(data), headers={"Content-Encoding": "gzip"})
        if fault.kind == "truncated":  # promise the whole body, send half of it, hang up
            self.close_connection = True
            return self._send_bytes(200, data[: len(data) // 2], content_length=len(data))
        self._send_bytes(200, data)

    def _send_slowly(self, data: bytes, interval: float) -> None:
        self._leave_flight()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), 8):
            if self.fake._stopping.wait(interval):
                return
            self.wfile.write(data[start:start + 8])
            self.wfile.flush()

    def _send_headers_slowly(self, data: bytes, interval: float) -> None:
        self._leave_flight()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "X-Padding: " + "x" * 200 + "\r\n\r\n").encode()
        for byte in head:
            if self.fake._stopping.wait(interval):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_forever(self) -> None:
        self._leave_flight()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        chunk = b" " * 65536
        for _ in range(10**9 // len(chunk)):  # until the client hangs up (a broken pipe ends it)
            if self.fake._stopping.is_set():
                return
            self.wfile.write(chunk)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None,
                    content_length: int | None = None) -> None:
        self._leave_flight()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) if content_length is None else content_length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
