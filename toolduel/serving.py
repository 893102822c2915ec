"""``toolduel serve``: a toolduel checkpoint behind transformers' OpenAI-compatible server.

``transformers serve`` (the ``serve`` extra: FastAPI and uvicorn) loads one checkpoint folder,
renders each ``/v1/chat/completions`` request with the folder's chat template and the request's
``tools``, and reads the answer with the tokenizer's response template. :func:`serving_checkpoint`
makes such a folder from any model source toolduel takes, so that the server shows the model
the prompt ``toolduel eval --model`` renders for it:

- a GGUF file (or ``smollm2``): its cached conversion;
- a LoRA adapter folder: merged into its base, once, in the cache;
- a chat template that takes no tools (SmolLM2's own): wrapped so that the tools go into the
  system message as toolduel writes them there (:func:`toolduel.prompts.tools_in_system_template`);
- the answer: ``tool_calls="parsed"`` gives the tokenizer ChatML's response template, so the
  server hands ``<tool_call>`` blocks over as OpenAI ``tool_calls`` (what any client expects;
  but transformers answers a malformed block with HTTP 500, which a client sees as a failed
  request); ``"text"`` returns every answer as text, for toolduel's parser to read, so that a
  malformed call is scored as unparseable exactly as it is locally.

The folder is written into the cache, its weight files linked to the original's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from toolduel.checkpoints import (
    cache_root,
    export_merged,
    is_adapter,
    load_tokenizer,
    resolve_source,
    write_cache_entry,
)
from toolduel.config import ConfigError
from toolduel.prompts import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ChatRenderer,
    tools_in_system_template,
)

# How the server finds calls in a ChatML answer: text up to <|im_end|>, and every
# <tool_call>{"name": ..., "arguments": {...}}</tool_call> block as an OpenAI tool call
# (transformers' response-template format; the Qwen2 models get the same one built in).
CHATML_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {
            "open_pattern": r"\s*" + TOOL_CALL_OPEN,
            "close": TOOL_CALL_CLOSE,
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"},
    },
}
TEXT_RESPONSE_TEMPLATE = {  # the whole answer as content (the server's own parsing left out)
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {"content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"}},
}
RESPONSE_TEMPLATES = {"parsed": CHATML_RESPONSE_TEMPLATE, "text": TEXT_RESPONSE_TEMPLATE}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


def serving_available() -> bool:
    from transformers.utils.import_utils import is_serve_available

    return is_serve_available()


def _content_digest(folder: Path) -> str:
    """A short digest of a folder's files (names, sizes, modification times)."""
    entries = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(f"{folder.resolve()}|{'|'.join(entries)}".encode()).hexdigest()[:12]


def _merged_adapter(adapter: Path) -> Path:
    """The adapter merged into its base, as a full checkpoint in the cache (made once)."""
    folder = cache_root() / "serve" / f"{adapter.name}-merged-{_content_digest(adapter)}"
    if not (folder / "config.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        export_merged(adapter, folder)
    return folder


def serving_checkpoint(source: str, tool_calls: str = "parsed") -> tuple[Path, list[str]]:
    """A folder ``transformers serve`` can load for ``source``, and what was done to make it.
    ``tool_calls``: ``parsed`` (the server returns OpenAI tool_calls) or ``text``."""
    if tool_calls not in RESPONSE_TEMPLATES:
        raise ConfigError(f"tool_calls must be one of {', '.join(RESPONSE_TEMPLATES)} (got {tool_calls!r})")
    path = Path(resolve_source(source))
    if not path.exists():
        raise ConfigError(f"no model at {source}: give a checkpoint folder, an adapter folder, a .gguf file or smollm2")
    changes = []
    if is_adapter(path):
        path, changes = _merged_adapter(path), ["merged the LoRA adapter into its base"]
    if not (path / "config.json").is_file():
        raise ConfigError(f"{source} holds no model (no config.json or adapter_config.json)")
    tokenizer = load_tokenizer(path)
    if not tokenizer.chat_template:
        raise ConfigError(f"{source} has no chat template; serve a chat/instruct checkpoint")
    template = tokenizer.chat_template
    if not ChatRenderer(tokenizer).tools_in_template:
        template = tools_in_system_template(template)
        changes.append("its chat template takes no tools: they go into the system message, as toolduel writes them")
    changes.append("tool calls are returned as OpenAI tool_calls" if tool_calls == "parsed" else
                   "answers are returned as text (toolduel's parser reads the calls)")

    def fill(staging: Path) -> None:
        for item in path.iterdir():
            if item.is_file() and item.name not in _TOKENIZER_FILES:
                (staging / item.name).symlink_to(item.resolve())
        tokenizer.chat_template = template
        tokenizer.response_template = RESPONSE_TEMPLATES[tool_calls]
        tokenizer.save_pretrained(staging)

    folder = cache_root() / "serve" / f"{path.name}-{tool_calls}-{_content_digest(path)}"
    if not (folder / "config.json").exists():
        write_cache_entry(folder, fill)
    return folder, changes


def serve(folder: Path, host: str, port: int, dtype: str, device: str) -> None:
    """Run transformers' server on ``folder`` until interrupted (blocks); needs
    :func:`serving_available`, which the caller checks before preparing the folder."""
    from transformers.cli.serve import Serve

    Serve(force_model=str(folder), host=host, port=port, dtype=dtype, device=device, log_level="warning")
