"""A deadline for a whole HTTP request: connecting, sending, the status line and headers, and
the body, together.

httpx bounds each socket operation (``timeout``) but not a request in all, so a server that
sends its headers a byte at a time, each byte within the read timeout, holds a request open as
long as it likes. :func:`deadline_client` builds an ``httpx.Client`` whose connections use
httpcore's network backend wrapped in :class:`DeadlineBackend`: every read, write and connect is
given only what is left of the deadline that :func:`within` set for the thread running it, and
fails with a timeout once it has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_deadline = threading.local()  # .at: the monotonic time this thread's request must end by


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Every socket operation of this thread's requests ends within ``seconds`` from now."""
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = None


def _left(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of this thread's deadline; a timeout error once it passed."""
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, each socket operation given only what is left of the
    deadline of the thread that runs it (:func:`within`)."""

    def __init__(self, backend: httpcore.NetworkBackend):
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return DeadlineStream(self._backend.connect_tcp(host, port, _left(timeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return DeadlineStream(self._backend.connect_unix_socket(path, _left(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def deadline_client(timeout: float, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose requests keep to the deadline :func:`within` sets (no redirects)."""
    limits = options.pop("limits", httpx.Limits())
    transport = httpx.HTTPTransport(limits=limits)
    pool = transport._pool  # httpcore's ConnectionPool: each new connection takes its network backend from here
    pool._network_backend = DeadlineBackend(pool._network_backend)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, **options)
