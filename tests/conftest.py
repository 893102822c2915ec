"""Shared fixtures. Expensive ones are session-scoped and must not be mutated by tests."""

from __future__ import annotations

import itertools

import pytest
from fake_openai_server import FakeOpenAIServer

# --- OpenAI-compatible endpoint -------------------------------------------------------------


@pytest.fixture
def fake_openai_server():
    """A running :class:`FakeOpenAIServer`; script it with ``server.faults = [...]``."""
    with FakeOpenAIServer() as server:
        yield server


# --- tiny transformers model -----------------------------------------------------------------

_CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Delhi"]
_VERBS = ["What is the weather in", "Book a table in", "Convert 12 EUR for", "Find flights to"]


def tokenizer_corpus() -> list[str]:
    """A few hundred short chat and tool-call strings: enough to train a ~500-token BPE."""
    texts = []
    for (verb, city), number in zip(itertools.product(_VERBS, _CITIES), itertools.cycle(range(7, 100, 13))):
        texts.append(f"{verb} {city} on day {number}?")
        texts.append(f'{{"name": "get_weather", "arguments": {{"city": "{city}", "days": {number}}}}}')
        texts.append(f"Sorry, I cannot help with {city.lower()} right now.")
        texts.append(f"The temperature in {city} is {number} degrees celsius.")
    texts += [f"Please {verb} the {thing} for {city}." for verb, thing, city in itertools.product(
        ["check", "cancel", "update", "show"], ["booking", "forecast", "account", "order", "invoice"], _CITIES)]
    texts += [f"user assistant system tool {n} {n * 7} {n / 4}" for n in range(100)]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Byte-level BPE (vocab 500, digits one per token) with a chat template taking ``tools=``."""
    from toolduel.world.tiny_models import train_tokenizer

    return train_tokenizer(tokenizer_corpus(), vocab_size=500)


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_tokenizer):
    """A freshly initialised 2-layer Qwen2 (hidden 64), in eval mode, float32, on CPU."""
    from toolduel.world.tiny_models import build_qwen2

    model = build_qwen2(tiny_tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        intermediate_size=128, seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def opinionated_qwen2(tiny_qwen2):
    """The tiny Qwen2 with large random weights. Freshly initialised (std 0.02) and with tied
    embeddings, it echoes the last prompt token whatever came before, so every prompt would get
    the same answer and a padding bug would go unseen."""
    import copy

    import torch

    model = copy.deepcopy(tiny_qwen2)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.normal_(0.0, 0.3, generator=generator)
    return model
