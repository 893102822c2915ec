"""The FC model behind an OpenAI-compatible server that follows the run (``fc_server``).

In a run on many GPUs the FC model answers the attack's queries from a server of its own
(``vllm serve --enable-lora``) instead of from a copy inside every training process. The
server holds the round-0 FC model; every defended FC model is a LoRA adapter (``fc_lora``),
which the run loads into the server under a name of its own (vLLM's ``/v1/load_lora_adapter``,
enabled by ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) and then asks for by that name.
Loading is idempotent, so a resumed run, or a restarted server, simply loads again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolduel.checkpoints import is_adapter
from toolduel.config import ConfigError


@dataclass(frozen=True)
class FCServer:
    """Where the FC model is served: ``url`` (with its API prefix), the name it gives the round-0
    FC model, the environment variable holding its API key, and requests in flight at once."""

    url: str
    round0_model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 32


def served_name(run_dir: Path, checkpoint: Path) -> str:
    """The name an adapter is served under: the run folder's name and the checkpoint's place in it."""
    relative = Path(checkpoint).resolve().relative_to(Path(run_dir).resolve())
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"toolduel-{Path(run_dir).resolve().name}-{relative}")


def load_adapter(server: FCServer, name: str, adapter: Path, timeout: float = 300.0) -> None:
    """Ask the server to load ``adapter`` as model ``name``; an adapter it already holds is fine."""
    import httpx

    url = server.url.rstrip("/") + "/load_lora_adapter"
    key = os.environ.get(server.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(url, json={"lora_name": name, "lora_path": str(Path(adapter).resolve())},
                              headers=headers, timeout=timeout)
    except httpx.HTTPError as err:
        raise ConfigError(f"fc_server {server.url} cannot be reached to load the FC adapter "
                          f"({type(err).__name__}); is `vllm serve` running there?") from None
    if response.status_code == 200 or (response.status_code == 400 and "already" in response.text.lower()):
        return
    if response.status_code == 404:
        raise ConfigError(f"fc_server {server.url} has no {url.rsplit('/', 1)[-1]} route: start it with "
                          "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora")
    detail = " ".join(response.text.split())[:200]
    raise ConfigError(f"fc_server refused to load the FC adapter {adapter} (HTTP {response.status_code}: {detail})")


def served_fc_model(server: FCServer, checkpoint: Path, run_dir: Path, load: bool = True) -> Any:
    """The FC model in ``checkpoint`` as ``server`` serves it: an adapter under its own name
    (loaded first when ``load``), a full checkpoint (round 0's) under ``round0_model``."""
    from toolduel.models.endpoint import EndpointChatModel

    if is_adapter(checkpoint):
        model = served_name(run_dir, checkpoint)
        if load:
            load_adapter(server, model, checkpoint)
    else:
        model = server.round0_model
    return EndpointChatModel(base_url=server.url, model=model, api_key_env=server.api_key_env,
                             max_concurrency=server.concurrency, name=f"FC model ({model})")
