"""Model backends behind one interface (:class:`ChatModel`), and ``load_model`` to pick one.

    load_model("path/or/hub-id")                                    # transformers
    load_model({"backend": "transformers", "path": "...", "batch_size": 16})
    load_model({"backend": "endpoint", "base_url": "http://localhost:8000/v1", "model": "qwen"})

Backends import their heavy dependencies only when chosen.
"""

from __future__ import annotations

from typing import Any

from toolduel.models.base import ChatModel, Generation, GenerationConfig

BACKENDS = ("transformers", "endpoint")  # "vllm" joins here once its backend exists

__all__ = ["BACKENDS", "ChatModel", "Generation", "GenerationConfig", "load_model"]


def load_model(spec: dict | str) -> ChatModel:
    """A model from a spec: a string is a transformers path or hub id; a dict names its
    ``backend`` and that backend's options (for ``transformers``, ``path`` plus the options of
    ``TransformersChatModel.from_pretrained``; for ``endpoint``, those of ``EndpointChatModel``)."""
    if isinstance(spec, str):
        spec = {"backend": "transformers", "path": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec is a path string or a dict with a 'backend', got {type(spec).__name__}")
    options: dict[str, Any] = dict(spec)
    backend = options.pop("backend", "transformers")
    if "api_key" in options:
        raise ValueError("do not put the API key in a model spec; export it in an environment "
                         "variable and name that variable with 'api_key_env'")
    if backend == "transformers":
        if "path" not in options:
            raise ValueError("a transformers spec needs 'path' (a local folder or a hub id)")
        from toolduel.models.hf import TransformersChatModel

        return TransformersChatModel.from_pretrained(options.pop("path"), **options)
    if backend == "endpoint":
        missing = [key for key in ("base_url", "model") if key not in options]
        if missing:
            raise ValueError(f"an endpoint spec needs {' and '.join(missing)} "
                             "(e.g. base_url: http://localhost:8000/v1, model: <served model name>)")
        from toolduel.models.endpoint import EndpointChatModel

        return EndpointChatModel(**options)
    # The vLLM backend (an optional extra: pip install toolduel[vllm]) will be dispatched here,
    # importing vllm inside its own branch so that the package works without it.
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
