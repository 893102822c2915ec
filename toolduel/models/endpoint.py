"""An OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server, a hosted API) as a ChatModel.

Requests run in a thread pool of ``max_concurrency`` workers sharing one ``httpx.Client``.
A request is retried, with exponential backoff and jitter, on 408/429/5xx answers, timeouts
and connection errors (a body cut short is a connection error); ``Retry-After`` is honoured
up to ``retry_after_max`` seconds; a caller that pays per request sets ``retry_permit``, asked
before each retry goes out (False: it is not made). Whatever still fails becomes ``Generation(text="",
error=...)``, so one bad answer never costs the batch the others. Each attempt, and the model
lookup of :func:`served_model`, ends within ``timeout`` seconds in all, connecting, sending,
the status line and headers and the body together: every socket operation gets only what is
left of that deadline (:mod:`toolduel.models.deadline`), so a server trickling bytes, headers
included, cannot hold a request open. A body is read up to ``max_response_bytes`` (a larger
one is refused unread), uncompressed: the client asks for no content coding, and an answer in
one is refused, so a small compressed body cannot unpack into gigabytes. An answer's calls
nested deeper than :data:`~toolduel.models.chat_answer.MAX_NESTING` levels are refused too. A 200 answer that carries an
``error`` object, as some gateways send, fails with the server's message (retried where its
code would be).

The API key is read from the environment variable *named* by ``api_key_env`` when a batch
starts (:func:`api_key`: the whitespace a CRLF file leaves around it is dropped, control
characters inside it are refused); it is never stored on the object, in a config dict, in
``repr`` or in a log line. Every text from the endpoint or from an exception has the key
replaced by ``***`` before it is cut short, kept or shown, and an answer's calls are redacted
value by value; a key shorter than :data:`MIN_SECRET_CHARS` is not searched for (redacting "0"
would rewrite ordinary answers). Redirects are not followed, so the key goes to the configured
host only, and a server that lists the key as its model id is refused.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from toolduel.config import ConfigError
from toolduel.models.base import Generation, GenerationConfig
from toolduel.models.chat_answer import parse_chat_completion
from toolduel.models.chat_answer import one_line as _one_line
from toolduel.models.deadline import deadline_client, within
from toolduel.parsing import refuse_constant
from toolduel.schema import Tool

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429})  # plus every 5xx
# Upper case only: a pasted key (often lower-case hex or "sk-...") then never passes for a name.
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
IDENTITY = {"Accept-Encoding": "identity"}  # no content coding: the size bound holds on what is read
MIN_SECRET_CHARS = 8  # a shorter key guards nothing a reader could use, and "0" is in many answers
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def api_key(env_name: str) -> str | None:
    """The key in the environment variable ``env_name`` (None when unset or blank), without the
    whitespace around it; a ``ValueError`` naming the variable, never the key, when it holds
    control characters."""
    raw = os.environ.get(env_name) if _ENV_NAME.match(env_name or "") else None
    key = raw.strip() if raw else None
    if key and _CONTROL.search(key):
        raise ValueError(f"the API key in {env_name} holds control characters; export it as one line of text")
    return key or None


@dataclass
class _Failure:
    reason: str
    retryable: bool
    retry_after: float | None = None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent
    or unreadable."""
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
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def served_model(base_url: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 10.0) -> str:
    """The model a server answers for, when ``{base_url}/models`` lists exactly one: what
    ``--model`` means when an endpoint is given without it; else a ConfigError saying to name it."""
    try:
        key = api_key(api_key_env)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    headers = IDENTITY | ({"Authorization": f"Bearer {key}"} if key else {})
    url = f"{base_url.rstrip('/')}/models"
    try:
        with deadline_client(timeout, headers=headers) as client, within(timeout), \
                client.stream("GET", url) as response:
            response.raise_for_status()
            if coded := _content_coding(response):
                raise ValueError(coded)
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > 1_000_000:
                    raise ValueError("the model list is over 1 MB")
        names = [entry["id"] for entry in json.loads(body)["data"]]
        if not all(isinstance(name, str) for name in names):
            raise TypeError("a model id is not a string")
    except (httpx.HTTPError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise ConfigError(f"no model named, and {url} did not list the served ones "
                         f"({type(err).__name__}: {_one_line(_redact(str(err), key), 150)}); name it with --model") \
            from None
    names = [_redact(name, key) for name in names]
    if key and any("***" in name for name in names):
        raise ConfigError(f"no model named, and {url} lists the API key as a model id; name the model with --model")
    if len(names) != 1:
        raise ConfigError(f"no model named, and {url} lists {len(names)} models "
                          f"({_one_line(', '.join(names[:5]), 200)}); name one with --model")
    return names[0]


class EndpointChatModel:
    """A model served behind ``{base_url}/chat/completions``.

    ``base_url`` includes the API prefix (``http://localhost:8000/v1``). ``api_key_env`` is the
    *name* of the environment variable holding the key; when it is unset, requests go out
    without an ``Authorization`` header (local servers seldom need one).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        max_concurrency: int = 8,
        extra_body: dict | None = None,
        name: str | None = None,
        max_response_bytes: int = 2_000_000,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r} "
                             "(e.g. http://localhost:8000/v1)")
        if not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env):
            # Never echo the value: someone may have pasted the key itself here.
            raise ValueError("api_key_env must be the upper-case NAME of an environment variable "
                             "(e.g. OPENAI_API_KEY), not the key itself; export the key in that variable")
        api_key(api_key_env)  # a key that cannot be sent is refused now, not at the first request
        if max_concurrency < 1 or max_retries < 0 or not 0 < timeout < float("inf"):
            raise ValueError("need max_concurrency >= 1, max_retries >= 0 and timeout > 0; got "
                             f"{max_concurrency}, {max_retries}, {timeout}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.max_concurrency = max_concurrency
        self.extra_body = dict(extra_body or {})
        self.max_response_bytes = max_response_bytes
        self._rng = random.Random()
        # asked before each retry, from any worker thread; False: the request is not retried
        self.retry_permit: Callable[[], bool] | None = None

    def __repr__(self) -> str:
        return (f"EndpointChatModel(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})")

    def to_config(self) -> dict:
        """The settings as a ``load_model`` spec (the key's variable name, never the key)."""
        return {"backend": "endpoint", "base_url": self.base_url, "model": self.model,
                "api_key_env": self.api_key_env, "timeout": self.timeout,
                "connect_timeout": self.connect_timeout, "max_retries": self.max_retries,
                "backoff_base": self.backoff_base, "backoff_max": self.backoff_max,
                "retry_after_max": self.retry_after_max, "max_concurrency": self.max_concurrency,
                "extra_body": dict(self.extra_body), "name": self.name,
                "max_response_bytes": self.max_response_bytes}

    def request_body(self, conversation: list[dict], tools: list[Tool], config: GenerationConfig,
                     seed: int | None = None) -> dict:
        body = {"model": self.model, "messages": conversation, "temperature": config.temperature,
                "top_p": config.top_p, "max_tokens": config.max_new_tokens, **self.extra_body}
        if tools:
            body["tools"] = [tool.to_openai() for tool in tools]
        if seed is not None:
            body["seed"] = seed
        return body

    def generate(self, conversations: list[list[dict]], tools: list[list[Tool]],
                 config: GenerationConfig | None = None) -> list[Generation]:
        """One Generation per conversation, in input order. With a seed, request ``i`` is sent
        ``seed + i``, so repeated prompts (``k`` samples) still differ yet a rerun repeats."""
        if len(conversations) != len(tools):
            raise ValueError(f"got {len(conversations)} conversations but {len(tools)} tool lists; "
                             "pass one tool list per conversation")
        if not conversations:
            return []
        config = config or GenerationConfig()
        bodies = [self.request_body(conv, conv_tools, config,
                                    None if config.seed is None else config.seed + i)
                  for i, (conv, conv_tools) in enumerate(zip(conversations, tools))]
        key = api_key(self.api_key_env)
        if key is None:
            logger.debug("%s is not set; sending requests without an Authorization header", self.api_key_env)
        headers = IDENTITY | ({"Authorization": f"Bearer {key}"} if key else {})
        timeout = httpx.Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout))
        limits = httpx.Limits(max_connections=self.max_concurrency,
                              max_keepalive_connections=self.max_concurrency)
        with deadline_client(timeout, limits=limits, headers=headers) as client, \
                ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies)),
                                   thread_name_prefix="toolduel-endpoint") as pool:
            futures = [pool.submit(self._answer, client, body, key) for body in bodies]
            return [future.result() for future in futures]

    def _answer(self, client: httpx.Client, body: dict, api_key: str | None) -> Generation:
        """One request with retries; never raises."""
        started, waited = time.monotonic(), 0.0
        for attempt in range(self.max_retries + 1):
            try:
                outcome = self._attempt(client, body, api_key)
            except Exception as exc:  # a bug or an exotic transport error must not sink the batch
                outcome = _Failure(_redact(f"{type(exc).__name__}: {exc}", api_key), retryable=False)
            if isinstance(outcome, Generation):
                outcome.meta.update(attempts=attempt + 1, waited_s=round(waited, 3),
                                    latency_s=round(time.monotonic() - started, 3))
                return _without_secret(outcome, api_key)
            failure = outcome
            if not failure.retryable or attempt == self.max_retries:
                break
            if self.retry_permit is not None and not self.retry_permit():
                failure.reason += "; not retried: the request budget is spent"
                break
            delay = self._backoff(attempt, failure.retry_after)
            logger.info("retrying %s in %.2fs (attempt %d/%d): %s", self.name, delay, attempt + 1,
                        self.max_retries + 1, failure.reason)
            time.sleep(delay)
            waited += delay
        reason = _one_line(f"{failure.reason} (after {attempt + 1} attempt{'s' if attempt else ''})")
        logger.warning("%s: request failed: %s", self.name, reason)
        return Generation(text="", error=reason,
                          meta={"attempts": attempt + 1, "waited_s": round(waited, 3),
                                "latency_s": round(time.monotonic() - started, 3)})

    def _attempt(self, client: httpx.Client, body: dict, api_key: str | None) -> Generation | _Failure:
        """One request; every failure's reason already redacted (see the module docstring)."""
        deadline = time.monotonic() + self.timeout
        try:
            with within(self.timeout), client.stream("POST", f"{self.base_url}/chat/completions",
                                                      json=body) as response:
                content = self._read_bounded(response, deadline)
        except httpx.TimeoutException as exc:
            return _Failure(f"timeout ({type(exc).__name__})", retryable=True)
        except httpx.TransportError as exc:  # refused, reset, or a body cut short
            return _Failure(_redact(f"connection error ({type(exc).__name__}: {exc})", api_key), retryable=True)
        if isinstance(content, _Failure):
            return content
        status = response.status_code
        if not 200 <= status < 300:
            retryable = status in RETRY_STATUSES or status >= 500
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            text = _redact(content.decode("utf-8", errors="replace"), api_key)
            return _Failure(f"HTTP {status}: {_one_line(text, 200)}", retryable, retry_after)
        try:
            data = json.loads(content, parse_constant=refuse_constant)  # NaN: no JSON, nor a file written from it
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            return _Failure(f"malformed JSON in the answer ({_one_line(_redact(str(exc), api_key), 120)})",
                            retryable=False)
        error = data.get("error") if isinstance(data, dict) and "choices" not in data else None
        if error is not None:  # a gateway's error under a 200 status
            return _error_in_answer(error, api_key)
        try:
            return parse_chat_completion(data)
        except ValueError as exc:
            return _Failure(_redact(str(exc), api_key), retryable=False)

    def _read_bounded(self, response: httpx.Response, deadline: float) -> bytes | _Failure:
        """The body, read in pieces until ``deadline`` (a timeout, retried) and ``max_response_bytes``
        (refused: a larger answer is no answer a chat model gives)."""
        coded = _content_coding(response)
        if coded:
            return _Failure(coded, retryable=False)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            return _Failure(f"the answer is {int(declared):,} bytes, more than the {self.max_response_bytes:,} "
                            "read", retryable=False)
        pieces, size = [], 0
        for piece in response.iter_bytes():
            size += len(piece)
            if size > self.max_response_bytes:
                return _Failure(f"the answer is more than the {self.max_response_bytes:,} bytes read", retryable=False)
            if time.monotonic() > deadline:
                return _Failure(f"timeout (no complete answer within {self.timeout:g} s)", retryable=True)
            pieces.append(piece)
        return b"".join(pieces)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter"


def _content_coding(response: httpx.Response) -> str | None:
    """Why ``response`` is not read: a content coding it was not asked for (None: there is none)."""
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    return f"the answer is {_one_line(coding, 40)}-encoded, which was not asked for (Accept-Encoding: identity)"


def _error_in_answer(error: Any, api_key: str | None) -> _Failure:
    """A 200 answer's ``error`` object as a failure: its message, retried where its ``code`` is
    a status that would be."""
    message = error.get("message") if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    code = int(code) if isinstance(code, (int, str)) and str(code).isdigit() else None
    retryable = code is not None and (code in RETRY_STATUSES or 500 <= code < 600)
    text = _redact(str(message), api_key)
    return _Failure(f"the server answered an error{f' ({code})' if code else ''}: {_one_line(text, 200)}", retryable)


def _redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by ``***`` (a secret under :data:`MIN_SECRET_CHARS` is left alone)."""
    return text.replace(secret, "***") if secret and len(secret) >= MIN_SECRET_CHARS else text


def _redact_values(value: Any, secret: str) -> Any:
    """A decoded JSON value with the secret redacted in every string in it, keys included."""
    if isinstance(value, str):
        return _redact(value, secret)
    if isinstance(value, list):
        return [_redact_values(item, secret) for item in value]
    if isinstance(value, dict):
        return {_redact(str(k), secret): _redact_values(v, secret) for k, v in value.items()}
    return value


def _without_secret(generation: Generation, secret: str | None) -> Generation:
    """``generation`` with every echo of the API key (a server may repeat its request headers)
    replaced by ``***``, in the text and in the structured calls."""
    if not secret:
        return generation
    generation.text = _redact(generation.text, secret)
    if generation.tool_calls is not None:
        generation.tool_calls = _redact_values(generation.tool_calls, secret)
    return generation
