"""The duel's two players: where round 0's come from, and how a round's checkpoint is loaded
to generate (the harvest, the evaluation, the FC model answering the attack)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from toolduel import run_files as files
from toolduel.checkpoints import (
    ADAPTER_CONFIG,
    holds_model,
    load_causal_lm,
    load_tokenizer,
    resolve_source,
    save_checkpoint,
)
from toolduel.config import ConfigError
from toolduel.duel.config import GameConfig
from toolduel.models import load_model_for_generation
from toolduel.models.base import ChatModel
from toolduel.models.served import FCServer, served_fc_model
from toolduel.run_files import RunFolder
from toolduel.training.arguments import generation_dtype
from toolduel.training.processes import process_count, run_alone


def require_generation_backend(config: GameConfig) -> None:
    """A clear message, before any work is done, when the harvest and evaluation are to
    generate with vLLM and vLLM is missing."""
    if config.generation_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("generation_backend is vllm but vllm is not installed: pip install 'toolduel[vllm]' "
                          "(a CUDA machine), or generate with transformers")


def world_models(budget: str, progress: bool = True):
    """The embedded world's models, built on first use (and cached). With several processes the
    build, which trains, runs in a child process of the main one (:func:`run_alone`)."""
    from toolduel.training.warm_start import ensure_world_models

    if process_count() > 1:
        run_alone(["world", "build", "--budget", budget], what="building the world models")
    return ensure_world_models(budget, progress=progress)


def start_players(run: RunFolder, progress: bool = True) -> None:
    """Round 0's players: the configured models, or the embedded world's (built or cached),
    copied into the run folder so that it is self-contained."""
    config = run.config
    fc_path, query_path = config.fc_model, config.query_model
    if fc_path is None or query_path is None:
        world = world_models(config.world_budget, progress)
        fc_path, query_path = fc_path or world.fc_path, query_path or world.query_path
    players = files.round_dir(run.dir, 0)
    for name, source in ((files.FC_MODEL, fc_path), (files.QUERY_MODEL, query_path)):
        source = resolve_source(source)  # a GGUF file: its converted checkpoint
        if Path(source).is_dir() and not holds_model(source):
            raise ConfigError(f"{source} holds no model (neither config.json nor {ADAPTER_CONFIG}); point "
                              f"{name.replace('_model', '')}_model at a checkpoint folder, a GGUF file or a hub id")
        if Path(source).is_dir():
            shutil.copytree(source, players / name, dirs_exist_ok=True)
            continue
        try:  # a hub id (a path that does not exist lands here too, and is named so)
            model, tokenizer = load_causal_lm(source, dtype=config.dtype), load_tokenizer(source)
        except (OSError, ValueError) as err:  # transformers and the hub: not found, offline, a bad name
            setting = name.replace("_model", "") + "_model"
            raise ConfigError(f"{setting} {source} cannot be loaded: no such folder or file here, and not a hub id "
                              f"this machine can fetch ({' '.join(str(err).split())[:200]})") from None
        save_checkpoint(model, tokenizer, players / name)
    run.mark("0:players", fc_path=players / files.FC_MODEL, query_path=players / files.QUERY_MODEL)


def load_chat_model(path: str | Path, config: GameConfig, progress: bool = False, name: str | None = None) -> ChatModel:
    """A checkpoint of the run (a full model, or a LoRA adapter merged into its base) for generation."""
    options = {"gpu_memory_utilization": config.vllm_gpu_memory_utilization} \
        if config.generation_backend == "vllm" else {}
    try:
        return load_model_for_generation(path, config.generation_backend, batch_size=config.batch_size,
                                         progress=progress, name=name, dtype=generation_dtype(config), **options)
    except ConfigError:
        raise
    except (OSError, ValueError) as err:  # transformers: no weights, no tokenizer, a damaged file
        detail = " ".join(str(err).split())[:160]
        raise ConfigError(f"{path} cannot be loaded as {name or 'a model'} ({type(err).__name__}: {detail}); "
                          "restore the folder, or start the run again") from None


def fc_server(config: GameConfig) -> FCServer | None:
    if not config.fc_server:
        return None
    return FCServer(config.fc_server, config.fc_server_model or config.fc_model, config.fc_server_api_key_env,
                    config.fc_server_concurrency)


def fc_player(run: RunFolder, progress: bool = False, load: bool = True) -> ChatModel:
    """The current FC model for generation: from ``fc_server`` when the config names one (``load``:
    load this round's adapter into it first), else loaded from its checkpoint in the run folder."""
    server = fc_server(run.config)
    if server is not None:
        return served_fc_model(server, run.path("fc_path"), run.dir, load=load)
    return load_chat_model(run.path("fc_path"), run.config, progress, "FC model")
