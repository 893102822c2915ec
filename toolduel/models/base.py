"""The one interface every model backend implements: chat prompts with tools in, texts out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from toolduel.schema import Tool


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Generation:
    """What a model answered to one prompt.

    ``text`` is the raw text; ``tool_calls`` holds structured calls when the backend returns
    them (OpenAI ``tool_calls``, as received); ``error`` says why no answer came (endpoint
    failure after retries), in which case ``text`` is empty.
    """

    text: str
    tool_calls: list[dict] | None = None
    error: str | None = None
    meta: dict = field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    """``generate`` answers each conversation, given the tools offered with it.

    To draw ``k`` samples of one prompt, repeat it ``k`` times with ``temperature > 0``.
    """

    name: str

    def generate(self, conversations: list[list[dict]], tools: list[list[Tool]],
                 config: GenerationConfig | None = None) -> list[Generation]: ...
