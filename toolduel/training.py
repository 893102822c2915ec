"""How the duel's trainers run: precision, memory, batch shape, LoRA, vLLM rollouts, several processes.

Both trainers (GRPO on the query model in the attack, SFT or GRPO on the FC model in the
defence) take their hardware settings from here, so that a GameConfig means the same thing
on a laptop CPU, one GPU, or eight GPUs under ``accelerate launch``:

- A batch setting is the batch of one optimizer step over all processes: ``attack_prompts_per_step
  * num_generations`` queries, ``defend_batch_size`` examples. It is split over the processes
  and the gradient accumulation steps (:func:`per_device_batch`), so adding GPUs makes a step
  faster, not different.
- LoRA (:func:`lora_config`): a PEFT ``LoraConfig`` for the player whose ``*_lora`` setting is on.
- vLLM rollouts (:func:`vllm_settings`): TRL's ``use_vllm``, imported only when asked for.
- Processes (:func:`is_main_process`, :func:`share_from_main`): under ``accelerate launch``
  every process plays the game loop; only the main process writes run files.
  :func:`between_phases` stops DeepSpeed ZeRO-3 from partitioning models loaded outside a
  trainer; :func:`run_alone` runs one process's own training (the world build) outside the group.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
from pathlib import Path
from typing import Any, Callable

from toolduel.config import ConfigError
from toolduel.game_config import GameConfig

# --- processes ---------------------------------------------------------------------------------


def process_state() -> Any:
    """accelerate's view of this process (set up once; the same object for the trainers).

    On a machine without CUDA the state must be made with ``cpu=True``: otherwise accelerate
    sees no device to run several processes on and every process would think it is alone."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1:
        _end_processes_at_exit()
    return state


@functools.cache
def _end_processes_at_exit() -> None:
    """Destroy the process group when the interpreter exits: left to the interpreter's own
    teardown, gloo's threads can abort a finished process ("terminate called without an active
    exception"), which ``accelerate launch`` reports as a failed run."""
    from accelerate import PartialState

    atexit.register(lambda: PartialState().destroy_process_group())


def is_main_process() -> bool:
    return process_state().is_main_process


def process_count() -> int:
    return process_state().num_processes


def wait_for_everyone() -> None:
    """A barrier across processes (for short waits only: it times out like the process group)."""
    process_state().wait_for_everyone()


def share_from_main(value: Any) -> Any:
    """The main process's ``value`` on every process (a picklable object; a no-op when alone)."""
    if process_count() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def gather_from_all(items: list) -> list:
    """Every process's ``items``, concatenated in process order, on every process."""
    if process_count() == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def between_phases() -> None:
    """Free what the last trainer held, and load whole models again.

    Under DeepSpeed ZeRO-3 a trainer leaves transformers set to partition every model loaded
    afterwards in this process (``zero.Init``); a model the main process then loads alone for
    generation, or one loaded before the next trainer starts, must be whole. The next trainer
    sets ZeRO-3 up again for its own model."""
    import gc

    import torch
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_alone(arguments: list[str], what: str) -> None:
    """Run ``toolduel <arguments>`` in a child process outside the process group, and wait.

    For work that trains but belongs to one process (building the world models): a trainer
    started by one process of a group would wait forever for the others to join its steps."""
    import os
    import subprocess
    import sys

    group = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in group and not k.startswith(("ACCELERATE_", "TORCHELASTIC_"))}
    child = subprocess.run([sys.executable, "-m", "toolduel.cli", *arguments], env=env, stdout=subprocess.DEVNULL)
    if child.returncode != 0:  # its own messages and progress went to this process's stderr
        raise ConfigError(f"{what} failed (toolduel {' '.join(arguments)}, exit code {child.returncode}); "
                          "see its messages above")


# --- batch shape, precision, memory ------------------------------------------------------------


def per_device_batch(total: int, config: GameConfig, setting: str) -> int:
    """``total`` examples per optimizer step, as a per-device batch for this many processes and
    ``gradient_accumulation_steps``."""
    processes, accumulation = process_count(), config.gradient_accumulation_steps
    if total % (processes * accumulation):
        raise ConfigError(f"{setting} = {total} per step must split evenly over {processes} process(es) x "
                          f"{accumulation} gradient accumulation step(s); change {setting}, the number of "
                          f"processes or gradient_accumulation_steps")
    return total // (processes * accumulation)


def trainer_settings(config: GameConfig) -> dict:
    """TrainingArguments every trainer of the duel shares."""
    import torch

    return {
        "use_cpu": not torch.cuda.is_available(),
        "bf16": config.dtype == "bfloat16",
        "activation_checkpointing": config.gradient_checkpointing,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "ddp_find_unused_parameters": False,  # every parameter of a causal LM takes part in its loss
        "report_to": config.report_to,
        "seed": config.seed,
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def grpo_settings(config: GameConfig, role: str, model: Any = None) -> dict:
    """The GRPOConfig arguments of :func:`trainer_settings`, the vLLM rollout settings of ``role``
    (query or fc), and the dtype TRL loads ``model`` in when it is a path (see :func:`trainable_model`)."""
    port = config.vllm_server_port if role == "query" else config.defend_vllm_server_port
    loading = {"model_init_kwargs": {"dtype": config.dtype}} if model is None or isinstance(model, str) else {}
    return trainer_settings(config) | loading | vllm_settings(config, port)


# --- LoRA --------------------------------------------------------------------------------------


def uses_lora(config: GameConfig, role: str) -> bool:
    if role not in ("query", "fc"):
        raise ValueError(f"role must be query or fc, got {role!r}")
    return config.query_lora if role == "query" else config.fc_lora


def lora_config(config: GameConfig, role: str) -> Any:
    """A PEFT ``LoraConfig`` for ``role`` (query or fc) when its LoRA setting is on, else None."""
    if not uses_lora(config, role):
        return None
    from peft import LoraConfig

    modules = config.lora_target_modules.strip()
    targets: str | list[str] = modules if modules == "all-linear" else [m.strip() for m in modules.split(",")]
    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def trainable_model(path: str | Path, config: GameConfig, role: str) -> tuple[Any, Any]:
    """``(model, peft_config)`` for a trainer: a checkpoint folder of a full model goes to the
    trainer as it is, with a new LoRA config when ``role`` trains with LoRA; an adapter folder
    (an earlier round's LoRA) is loaded onto its base and trained further, so each player keeps
    one adapter over the whole run. A full model is returned as its path (the trainer loads it
    with ``model_init_kwargs``); an adapter as a loaded model."""
    from toolduel.checkpoints import is_adapter, load_causal_lm

    path = str(Path(path).resolve()) if Path(path).exists() else str(path)
    if not is_adapter(path):
        return path, lora_config(config, role)
    if uses_lora(config, role):
        return load_causal_lm(path, trainable=True, dtype=config.dtype), None
    return load_causal_lm(path, merge=True, dtype=config.dtype), None  # LoRA off: train the merged model in full


def load_for_training(path: str | Path, config: GameConfig, role: str) -> tuple[Any, Any]:
    """Like :func:`trainable_model`, but always a loaded model (for trainers that take no path)."""
    from toolduel.checkpoints import load_causal_lm

    model, peft_config = trainable_model(path, config, role)
    if isinstance(model, str):
        model = load_causal_lm(model, dtype=config.dtype)
    return model, peft_config


# --- vLLM rollouts -----------------------------------------------------------------------------


def require_vllm(config: GameConfig) -> None:
    """A clear message, before any work is done, when ``use_vllm`` is set and vLLM is missing."""
    if config.generation_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("generation_backend is vllm but vllm is not installed: pip install 'toolduel[vllm]' "
                          "(a CUDA machine), or generate with transformers")
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm is set but vllm is not installed: pip install 'toolduel[vllm]' "
                          "(a CUDA machine), or leave use_vllm off to generate with transformers")


def vllm_settings(config: GameConfig, server_port: int) -> dict:
    """GRPOConfig arguments for TRL's vLLM rollouts (nothing when ``use_vllm`` is off)."""
    if not config.use_vllm:
        return {}
    require_vllm(config)
    settings: dict[str, Any] = {"use_vllm": True, "vllm_mode": config.vllm_mode}
    if config.vllm_mode == "server":
        settings |= {"vllm_server_host": config.vllm_server_host, "vllm_server_port": server_port}
    else:
        settings |= {"vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization}
    return settings


# --- saving what a trainer trained -------------------------------------------------------------


def save_atomically(path: Path, write: Callable[[str], Any]) -> Any:
    """``write(folder)`` into a temporary folder on every process, then (main process) rename it
    to ``path``: a crash never leaves half a checkpoint. Returns what ``write`` returned.

    Every process must call this: under DeepSpeed ZeRO-3 saving gathers the weights from all
    of them, and the trainer writes on the main process only."""
    temporary = path.with_name(path.name + ".tmp")
    main = is_main_process()
    if main:
        shutil.rmtree(temporary, ignore_errors=True)
    written = write(str(temporary))
    if main:
        shutil.rmtree(path, ignore_errors=True)
        temporary.rename(path)
    return written


def save_trained(trainer: Any, path: Path) -> None:
    """Save what ``trainer`` trained (a LoRA adapter, or the full model) and its tokenizer into ``path``."""
    save_atomically(path, trainer.save_model)
