"""Model backends behind one interface (:class:`ChatModel`), and ``load_model`` to pick one.

    load_model("path/or/hub-id")                                    # transformers
    load_model({"backend": "transformers", "path": "...", "batch_size": 16})
    load_model({"backend": "endpoint", "base_url": "http://localhost:8000/v1", "model": "qwen"})
    load_model({"backend": "vllm", "path": "...", "gpu_memory_utilization": 0.4})  # pip install "toolduel[vllm]"

    load_model_for_generation(path, "vllm", batch_size=32, progress=True)  # a run's players

Backends import their heavy dependencies only when chosen.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

from toolduel.config import ConfigError
from toolduel.models.base import ChatModel, Generation, GenerationConfig

BACKENDS = ("transformers", "endpoint", "vllm")
GENERATION_BACKENDS = ("transformers", "vllm")  # those that load a checkpoint from a path
VLLM_MISSING = 'the vllm backend needs vLLM: pip install "toolduel[vllm]" (Linux with a CUDA GPU)'

__all__ = ["BACKENDS", "GENERATION_BACKENDS", "VLLM_MISSING", "ChatModel", "Generation", "GenerationConfig",
           "close_model", "load_model", "load_model_for_generation", "vllm_available"]


def vllm_available() -> bool:
    """Whether the vllm extra is installed (without importing it: a config can check this cheaply)."""
    return importlib.util.find_spec("vllm") is not None


def load_model(spec: dict | str) -> ChatModel:
    """A model from a spec: a string is a transformers path or hub id; a dict names its
    ``backend`` and that backend's options (for ``transformers``, ``path`` plus the options of
    ``TransformersChatModel.from_pretrained``; for ``endpoint``, those of ``EndpointChatModel``;
    for ``vllm``, ``path`` plus the options of ``VLLMChatModel.from_pretrained``)."""
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
    if backend == "vllm":  # an optional extra; vllm itself is imported only when the engine starts
        if "path" not in options:
            raise ValueError("a vllm spec needs 'path' (a local folder, an adapter folder or a hub id)")
        from toolduel.models.vllm import VLLMChatModel

        _check_options("vllm", options, VLLMChatModel.from_pretrained, VLLMChatModel.__init__,
                       set_by_loader=("llm", "tokenizer", "lora_request", "eos_token_ids", "top_k"))
        return VLLMChatModel.from_pretrained(options.pop("path"), **options)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def load_model_for_generation(path: str | Path, backend: str = "transformers", *, batch_size: int = 8,
                              progress: bool = False, name: str | None = None, **options: Any) -> ChatModel:
    """A checkpoint (or adapter) folder loaded to generate with ``backend`` (``transformers`` or
    ``vllm``): how a run loads its query and FC models for the harvest and the evaluation.
    ``batch_size`` is the transformers backend's (vLLM schedules its own batches); ``options``
    go to the backend (e.g. ``gpu_memory_utilization`` for vllm, ``dtype`` for both). Close a
    vllm model (``model.close()``) when done, to give its GPU memory back before training."""
    if backend not in GENERATION_BACKENDS:
        raise ConfigError(f"generation backend must be one of {', '.join(GENERATION_BACKENDS)} (got {backend!r})")
    spec: dict[str, Any] = {"backend": backend, "path": str(path), "progress": progress, **options}
    if name is not None:
        spec["name"] = name
    if backend == "transformers":
        spec["batch_size"] = batch_size
    return load_model(spec)


def close_model(model: ChatModel) -> None:
    """Give back what a model holds beyond Python memory (a vLLM engine and its share of the GPU);
    nothing to do for the other backends. Call it when a phase is done with its models."""
    close = getattr(model, "close", None)
    if callable(close):
        close()


def _check_options(backend: str, options: dict, *functions: Any, set_by_loader: tuple[str, ...] = ()) -> None:
    """A one-line error naming a setting that none of ``functions`` takes (a typo in a spec),
    or one that the loader sets itself."""
    accepted = {name for function in functions for name, parameter in inspect.signature(function).parameters.items()
                if parameter.kind is not parameter.VAR_KEYWORD} - {"self", "cls", *set_by_loader}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"unknown {backend} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(accepted))}")
