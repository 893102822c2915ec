"""Model checkpoints in the run folder: full models or LoRA adapters.

A checkpoint folder holds either a full model (``config.json`` and weights) or a PEFT LoRA
adapter (``adapter_config.json``, ``adapter_model.safetensors``, whose ``base_model_name_or_path``
names the base: the run's round-0 copy of the player, or a hub id). Both hold the tokenizer.
Every loader in toolduel goes through :func:`load_causal_lm`, so an adapter folder works
wherever a model folder does: generation (merged into the base for speed), further training
(the adapter stays trainable), and the merged export of the final FC model
(:func:`export_merged`), which loads without PEFT.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    """True when ``path`` is a local folder holding a PEFT adapter (not a full model)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (a local folder or a hub id)."""
    config_path = Path(path) / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path} cannot be read: {err}") from None
    if not base:
        raise ValueError(f"{config_path} names no base model; set base_model_name_or_path to the folder or hub id "
                         "of the model the adapter was trained on")
    looks_local = base.startswith(("/", ".", "~")) or base.count("/") > 1  # a hub id is "org/name"
    if looks_local and not Path(base).expanduser().exists():
        raise ValueError(f"the adapter in {path} was trained on {base}, which does not exist (moved?); point "
                         f"base_model_name_or_path in {config_path} at that model")
    return base


def _dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, str) and dtype in ("float32", "bfloat16", "float16"):
        return getattr(torch, dtype)
    return dtype


def load_causal_lm(path: str | Path, *, merge: bool = False, trainable: bool = False, dtype: Any = "auto",
                   **from_pretrained: Any) -> Any:
    """A causal LM from a model folder, hub id or adapter folder.

    An adapter is loaded onto its base with PEFT: ``merge=True`` folds it into the base weights
    (a plain transformers model, for generation or full fine-tuning), ``trainable=True`` keeps
    it a trainable ``PeftModel``; otherwise a frozen ``PeftModel``. ``from_pretrained`` goes to
    ``AutoModelForCausalLM.from_pretrained`` (trust_remote_code, revision, attn_implementation)."""
    from transformers import AutoModelForCausalLM

    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=_dtype(dtype), **from_pretrained)
    from peft import PeftModel

    from_pretrained.pop("revision", None)  # a revision names the adapter's commit, not its base's
    base = AutoModelForCausalLM.from_pretrained(adapter_base(path), dtype=_dtype(dtype), **from_pretrained)
    model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable and not merge)
    return model.merge_and_unload() if merge else model


def tokenizer_source(path: str | Path) -> str:
    """Where the tokenizer of a checkpoint lives: the folder itself, or an adapter's base when
    the adapter folder holds none."""
    if is_adapter(path) and not (Path(path) / "tokenizer_config.json").is_file():
        return adapter_base(path)
    return str(path)


def load_tokenizer(path: str | Path, **from_pretrained: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_source(path), **from_pretrained)


def save_checkpoint(model: Any, tokenizer: Any, path: Path) -> None:
    """Save into a temporary folder, then rename: a crash never leaves half a checkpoint."""
    temporary = path.with_name(path.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    shutil.rmtree(path, ignore_errors=True)
    temporary.rename(path)


def export_merged(path: str | Path, out: Path, dtype: Any = "auto") -> None:
    """A full checkpoint in ``out`` of the model in ``path``: an adapter is merged into its base
    (``merge_and_unload``), so ``out`` loads with transformers alone; a full model is copied."""
    if not is_adapter(path):
        temporary = out.with_name(out.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(path, temporary)
        shutil.rmtree(out, ignore_errors=True)
        temporary.rename(out)
        return
    save_checkpoint(load_causal_lm(path, merge=True, dtype=dtype), load_tokenizer(path), out)
