"""A Hugging Face transformers causal LM with a chat template, as a ChatModel.

Prompts: :class:`toolduel.prompts.ChatRenderer`, the rendering training uses too. A chat
template that mentions ``tools`` gets them through ``apply_chat_template(tools=...)``, in the
format the model was trained on; any other template gets them in the system message.

Generation: prompts are sorted by length and decoded ``batch_size`` rows at a time by
:class:`toolduel.models.decoding.ContinuousDecoder` (a row leaves at its stop token and a
waiting prompt takes its place; prompts are padded on the LEFT by hand, so the caller's
tokenizer is never modified). Greedy when ``temperature == 0``; otherwise sampling, whose
seed is applied inside ``torch.random.fork_rng`` so the caller's random state is untouched.

Decoding keeps only the new tokens, stops at the first stop token, and drops special tokens
except the tool-call tags (``<tool_call>`` is a special token in some tokenizers, and
``skip_special_tokens=True`` would silently turn a call into bare JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolduel.models.base import Generation, GenerationConfig
from toolduel.models.decoding import ContinuousDecoder, token_picker
from toolduel.progress import progress_bar
from toolduel.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ChatRenderer
from toolduel.schema import Tool

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype | None:
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersChatModel:
    """A causal LM and its tokenizer behind :class:`toolduel.models.base.ChatModel`.

    ``tool_prompt``: ``"auto"`` uses the chat template for tools when it mentions them and the
    system prompt otherwise; ``"template"`` / ``"system"`` force one way. ``chat_template``
    overrides the tokenizer's template (the tokenizer itself is left as it is).
    ``stop_tokens`` end an answer in addition to the EOS ids of the tokenizer and the model's
    generation config (those absent from the vocabulary are ignored); ``keep_tokens`` survive
    decoding even when the tokenizer marks them special.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str | None = None,
        batch_size: int = 8,
        progress: bool = False,
        device: str | torch.device | None = None,
        tool_prompt: str = "auto",
        chat_template: str | None = None,
        stop_tokens: tuple[str, ...] = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"),
        keep_tokens: tuple[str, ...] = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.renderer = ChatRenderer(tokenizer, tool_prompt, chat_template)
        self.model = model if device is None else model.to(device)
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        self.progress = progress
        self.stop_ids = self._stop_ids(stop_tokens)
        keep_ids = {self._token_id(token) for token in keep_tokens} - {None}
        special_ids = set(tokenizer.all_special_ids) | {
            i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
        self.drop_ids = frozenset(special_ids - keep_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)

    @classmethod
    def from_objects(cls, model: Any, tokenizer: Any, **options: Any) -> "TransformersChatModel":
        """Wrap an already-loaded model and tokenizer. Neither is modified (the model is in eval
        mode only while generating), except that ``device=...`` moves the model there."""
        return cls(model, tokenizer, **options)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        model_kwargs: dict | None = None,
        tokenizer_kwargs: dict | None = None,
        **options: Any,
    ) -> "TransformersChatModel":
        """Load from a local folder or a hub id. ``device`` defaults to CUDA when available;
        ``model_kwargs`` go to ``AutoModelForCausalLM.from_pretrained`` (e.g. attn_implementation).
        A folder holding a LoRA adapter is loaded onto its base and merged (:mod:`toolduel.checkpoints`)."""
        from transformers import AutoTokenizer

        from toolduel.checkpoints import load_causal_lm, tokenizer_source

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(path), trust_remote_code=trust_remote_code,
                                                  revision=revision, **(tokenizer_kwargs or {}))
        model = load_causal_lm(path, merge=True, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code,
                               revision=revision, **(model_kwargs or {}))
        options.setdefault("name", str(path))
        return cls(model.eval(), tokenizer, device=device or default_device(), **options)

    def __repr__(self) -> str:
        return (f"TransformersChatModel(name={self.name!r}, batch_size={self.batch_size}, "
                f"tools_in_template={self.tools_in_template}, device={str(self.device)!r})")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tools_in_template(self) -> bool:
        return self.renderer.tools_in_template

    def render_prompt(self, conversation: list[dict], tools: list[Tool]) -> str:
        """The prompt text for one conversation, ending with the assistant header (the same
        rendering training uses: :class:`toolduel.prompts.ChatRenderer`)."""
        return self.renderer.prompt(conversation, tools)

    def generate(self, conversations: list[list[dict]], tools: list[list[Tool]],
                 config: GenerationConfig | None = None) -> list[Generation]:
        """One Generation per conversation, in input order."""
        if len(conversations) != len(tools):
            raise ValueError(f"got {len(conversations)} conversations but {len(tools)} tool lists; "
                             "pass one tool list per conversation")
        config = config or GenerationConfig()
        prompt_ids = [self.tokenizer(self.render_prompt(conv, conv_tools), add_special_tokens=False)["input_ids"]
                      for conv, conv_tools in zip(conversations, tools)]
        results: list[Generation | None] = [self._too_long(ids, config) for ids in prompt_ids]
        # Longest first: prompts admitted together share a width (less padding), and an
        # out-of-memory error, if any, comes at once.
        order = sorted((i for i, result in enumerate(results) if result is None), key=lambda i: -len(prompt_ids[i]))
        decoder = ContinuousDecoder(self.model, self.batch_size, self.stop_ids, self.pad_id)
        top_k = getattr(self.model.generation_config, "top_k", None) or 0
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=self._rng_devices(), enabled=config.seed is not None), \
                    progress_bar(f"generating ({self.name})", len(order), enabled=self.progress) as advance:
                if config.seed is not None:
                    torch.manual_seed(config.seed)
                # top_k: the model's own setting, else none (not transformers' global default of
                # 50), so that sampling means what it means on an endpoint: temperature and top_p.
                pick = token_picker(config.temperature, config.top_p, top_k)
                for position, new_ids in decoder.decode([prompt_ids[i] for i in order], config.max_new_tokens, pick):
                    index = order[position]
                    text, finish_reason, count = self.decode_new_tokens(new_ids)
                    results[index] = Generation(text=text, meta={"finish_reason": finish_reason,
                                                                 "prompt_tokens": len(prompt_ids[index]),
                                                                 "completion_tokens": count})
                    advance(1)
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _too_long(self, ids: list[int], config: GenerationConfig) -> Generation | None:
        """A failed generation for a prompt that, with its new tokens, would not fit the model's
        context (a huge record would otherwise run for minutes, or past what the model can
        attend to); None for one that fits."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        if not isinstance(context, int) or len(ids) + config.max_new_tokens <= context:
            return None
        return Generation(text="", error=f"the prompt is {len(ids):,} tokens, which with {config.max_new_tokens} new "
                                         f"ones is more than the model's context of {context:,}",
                          meta={"prompt_tokens": len(ids)})

    def decode_new_tokens(self, new_ids: list[int]) -> tuple[str, str, int]:
        """``(text, finish_reason, token_count)`` for generated ids: cut at the first stop token
        (``"stop"``; ``"length"`` when none came), drop special tokens but the kept tags."""
        finish_reason = "length"
        for position, token_id in enumerate(new_ids):
            if token_id in self.stop_ids:
                new_ids, finish_reason = new_ids[:position], "stop"
                break
        kept = [token_id for token_id in new_ids if token_id not in self.drop_ids]
        text = self.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return text, finish_reason, len(new_ids) + (finish_reason == "stop")

    def _token_id(self, token: str) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or self.tokenizer.convert_ids_to_tokens(token_id) != token:
            return None  # not in the vocabulary (mapped to unk, or nothing)
        return token_id

    def _stop_ids(self, stop_tokens: tuple[str, ...]) -> frozenset[int]:
        ids = {self.tokenizer.eos_token_id} | {self._token_id(token) for token in stop_tokens}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
        ids.discard(None)
        if not ids:
            raise ValueError("found no stop token: the tokenizer has no eos_token and none of "
                             f"{stop_tokens} is in its vocabulary; pass stop_tokens=(...)")
        return frozenset(ids)

    def _rng_devices(self) -> list[int]:
        device = self.device
        return [device.index or 0] if device.type == "cuda" else []
