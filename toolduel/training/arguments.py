"""Trainer arguments: precision, memory, batch shape, LoRA, vLLM rollouts.

Every trainer (GRPO on the query model in the attack, SFT or GRPO on the FC model in the
defence, in the duel and in the black-box attack) takes its hardware settings from here, so
that a setting means the same thing on a laptop CPU, one GPU, or eight GPUs under
``accelerate launch``:

- A batch setting is the batch of one optimizer step over all processes: ``attack_prompts_per_step
  * num_generations`` queries, ``defend_batch_size`` examples. It is split over the processes
  and the gradient accumulation steps (:func:`per_device_batch`), so adding GPUs makes a step
  faster, not different.
- LoRA (:func:`lora_config`): a PEFT ``LoraConfig`` for the player whose ``*_lora`` setting is on.
- vLLM rollouts (:func:`vllm_settings`): TRL's ``use_vllm``, imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Callable

from toolduel.config import ConfigError
from toolduel.settings import TrainerSettings
from toolduel.training.processes import is_main_process, process_count

# --- batch shape, precision, memory ------------------------------------------------------------


def per_device_batch(total: int, trainer: TrainerSettings, setting: str) -> int:
    """``total`` examples per optimizer step, as a per-device batch for this many processes and
    ``gradient_accumulation_steps``."""
    processes, accumulation = process_count(), trainer.gradient_accumulation_steps
    if total % (processes * accumulation):
        raise ConfigError(f"{setting} = {total} per step must split evenly over {processes} process(es) x "
                          f"{accumulation} gradient accumulation step(s); change {setting}, the number of "
                          f"processes or gradient_accumulation_steps")
    return total // (processes * accumulation)


def fast_bf16() -> bool:
    """Whether this machine runs bfloat16 fast: a CUDA GPU that supports it, or a CPU with bf16
    instructions (AVX512-BF16, AMX), where a bf16 matmul runs several times faster than float32."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def uses_autocast(trainer: TrainerSettings) -> bool:
    """Whether training runs under bf16 autocast over float32 weights (``autocast``; unset: where
    bf16 is fast)."""
    if trainer.dtype != "float32":
        return False
    return fast_bf16() if trainer.autocast is None else trainer.autocast


def generation_dtype(trainer: TrainerSettings) -> str:
    """The dtype copies of a player are loaded in to generate: bfloat16 with bf16 weights or
    autocast (a greedy answer hardly changes; generation runs about twice as fast), else float32."""
    return "bfloat16" if trainer.dtype == "bfloat16" or uses_autocast(trainer) else "float32"


def trainer_settings(trainer: TrainerSettings, seed: int) -> dict:
    """TrainingArguments every trainer shares."""
    import torch

    return {
        "use_cpu": not torch.cuda.is_available(),
        "bf16": trainer.dtype == "bfloat16" or uses_autocast(trainer),
        "activation_checkpointing": trainer.gradient_checkpointing,
        "gradient_accumulation_steps": trainer.gradient_accumulation_steps,
        "ddp_find_unused_parameters": False,  # every parameter of a causal LM takes part in its loss
        "report_to": trainer.report_to,
        "seed": seed,
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def grpo_settings(trainer: TrainerSettings, seed: int, server_port: int, model: Any = None) -> dict:
    """The GRPOConfig arguments of :func:`trainer_settings`, the vLLM rollout settings (``server_port``:
    the player's `trl vllm-serve` in server mode), and the dtype TRL loads ``model`` in when it is a
    path (see :func:`trainable_model`)."""
    loading = {"model_init_kwargs": {"dtype": trainer.dtype}} if model is None or isinstance(model, str) else {}
    return trainer_settings(trainer, seed) | loading | vllm_settings(trainer, server_port)


# --- LoRA --------------------------------------------------------------------------------------


def lora_config(trainer: TrainerSettings, lora: bool) -> Any:
    """A PEFT ``LoraConfig`` of the trainer's LoRA shape for a player that trains with ``lora``
    (its ``query_lora`` or ``fc_lora`` setting), else None."""
    if not lora:
        return None
    from peft import LoraConfig

    modules = trainer.lora_target_modules.strip()
    targets: str | list[str] = modules if modules == "all-linear" else [m.strip() for m in modules.split(",")]
    return LoraConfig(r=trainer.lora_rank, lora_alpha=trainer.lora_alpha, lora_dropout=trainer.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def trainable_model(path: str | Path, trainer: TrainerSettings, lora: bool) -> tuple[Any, Any]:
    """``(model, peft_config)`` for a trainer: a checkpoint folder of a full model goes to the
    trainer as it is, with a new LoRA config when the player trains with ``lora``; an adapter folder
    (an earlier round's LoRA) is loaded onto its base and trained further, so each player keeps
    one adapter over the whole run. A full model is returned as its path (the trainer loads it
    with ``model_init_kwargs``); an adapter as a loaded model."""
    from toolduel.checkpoints import is_adapter, load_causal_lm, resolve_source

    path = resolve_source(path)  # a GGUF file: its converted checkpoint
    path = str(Path(path).resolve()) if Path(path).exists() else str(path)
    if not is_adapter(path):
        if lora or trainer.train_layers is None:
            return path, lora_config(trainer, lora)
        model = load_causal_lm(path, dtype=trainer.dtype)
        return freeze_lower_layers(model, trainer.train_layers, bf16=uses_autocast(trainer)), None
    if lora:
        return load_causal_lm(path, trainable=True, dtype=trainer.dtype), None
    merged = load_causal_lm(path, merge=True, dtype=trainer.dtype)  # LoRA off: train the merged model in full
    if trainer.train_layers is not None:
        freeze_lower_layers(merged, trainer.train_layers, bf16=uses_autocast(trainer))
    return merged, None


def freeze_lower_layers(model: Any, train_layers: int, bf16: bool) -> Any:
    """``model`` with only its top ``train_layers`` transformer layers (and final norm) trainable:
    the token embeddings (often tied to the LM head) and the layers below stay as they are, and
    with ``bf16`` (autocast) the frozen layers are cast to bf16: they only run forward, and need
    no cast at every step. A quarter of a CPU step was the embeddings' dense gradient and update."""
    import torch

    layers = _decoder_layers(model)
    if layers is None:
        raise ConfigError(f"train_layers needs a decoder whose layers it can find (model.model.layers); "
                          f"{type(model).__name__} has none: set train_layers to null")
    model.get_input_embeddings().weight.requires_grad_(False)
    for layer in layers[:max(0, len(layers) - train_layers)]:
        layer.requires_grad_(False)
        if bf16:
            layer.to(torch.bfloat16)
    return model


def _decoder_layers(model: Any) -> Any:
    inner = getattr(model, "model", None)
    return getattr(inner, "layers", None)


def load_for_training(path: str | Path, trainer: TrainerSettings, lora: bool) -> tuple[Any, Any]:
    """Like :func:`trainable_model`, but always a loaded model (for trainers that take no path)."""
    from toolduel.checkpoints import load_causal_lm

    model, peft_config = trainable_model(path, trainer, lora)
    if isinstance(model, str):
        model = load_causal_lm(model, dtype=trainer.dtype)
    return model, peft_config


# --- vLLM rollouts -----------------------------------------------------------------------------


def require_vllm(trainer: TrainerSettings) -> None:
    """A clear message, before any work is done, when ``use_vllm`` is set and vLLM is missing."""
    if trainer.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm is set but vllm is not installed: pip install 'toolduel[vllm]' "
                          "(a CUDA machine), or leave use_vllm off to generate with transformers")


def vllm_settings(trainer: TrainerSettings, server_port: int) -> dict:
    """GRPOConfig arguments for TRL's vLLM rollouts (nothing when ``use_vllm`` is off)."""
    if not trainer.use_vllm:
        return {}
    require_vllm(trainer)
    settings: dict[str, Any] = {"use_vllm": True, "vllm_mode": trainer.vllm_mode}
    if trainer.vllm_mode == "server":
        settings |= {"vllm_server_host": trainer.vllm_server_host, "vllm_server_port": server_port}
    else:
        settings |= {"vllm_gpu_memory_utilization": trainer.vllm_gpu_memory_utilization}
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
