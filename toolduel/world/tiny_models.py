"""Tiny models built in-process: a byte-level BPE tokenizer trained on world text and a
small Qwen2 causal LM from a config. Both save as ordinary Hugging Face checkpoints, so the
rest of the pipeline loads them exactly as it loads a real model.

The tokenizer carries the compact ChatML template of :mod:`toolduel.chat_templates` (tools as
one-line signatures); these models stand in for a real one in tests that need a model in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from toolduel.chat_templates import IM_END, IM_START, compact_template

PAD = "<|endoftext|>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
# Not "special": a decode with skip_special_tokens=True must keep the call markers.
CALL_TOKENS = [TOOL_CALL_OPEN, TOOL_CALL_CLOSE]
# transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX, copied so the two cannot drift silently
# (tests compare them).
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                           r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

def _build_tokenizer_object(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # Qwen2's normalizer and, by default, its split, which already puts each digit in its own
    # piece (``\p{N}``). The saved tokenizer.json carries the split it was trained with, and
    # AutoTokenizer (transformers 5) keeps it even in a qwen2 checkpoint folder (tests check).
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in CALL_TOKENS])
    return tokenizer


def chat_texts(rows: list[dict]) -> list[str]:
    """Training rows (``messages`` and ``tools``) as the compact template renders them: what a
    tokenizer for the world's tiny models is trained on, so its merges fit what they read and write."""
    import json

    bootstrap = train_tokenizer(["a"], vocab_size=300)  # only its chat template is used
    return [bootstrap.apply_chat_template(row["messages"], tools=json.loads(row.get("tools") or "[]") or None,
                                          tokenize=False) for row in rows]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1536) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts``, digits split one per token, with a chat template
    that accepts ``tools=``. ``vocab_size`` counts the special and call tokens."""
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is below the 256-byte alphabet plus special "
                         "tokens; use at least 300 (1536 is the default)")
    tokenizer_object = _build_tokenizer_object(texts, vocab_size - len(CALL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        bos_token=None,
        model_max_length=2048,
        padding_side="left",  # generation pads on the left; training collators set their own
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = compact_template("fc")
    return tokenizer


def build_qwen2(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Qwen2ForCausalLM:
    """A freshly initialised Qwen2 causal LM sized for ``tokenizer`` (about 1M parameters at
    the defaults). Embeddings are tied, as in small Qwen2 models."""
    import torch

    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must divide by num_heads ({num_heads}) and "
                         f"num_heads by num_kv_heads ({num_kv_heads})")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
