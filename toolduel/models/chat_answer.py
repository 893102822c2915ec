"""An answer of an OpenAI-compatible ``/chat/completions`` endpoint, read: its shape checked,
its text and tool calls taken out as a :class:`~toolduel.models.base.Generation`, nothing in it
executed. Calls nested deeper than :data:`MAX_NESTING` levels are refused before anything walks
them (the key's redaction, the call parser)."""

from __future__ import annotations

import json
from typing import Any

from toolduel.models.base import Generation

MAX_NESTING = 32  # levels of JSON in an answer's tool calls: far above any tool's arguments


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_error(where: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"wrong shape: {where} should be {expected}, got {one_line(repr(got), 80)}")


def _message_text(content: Any) -> str:
    """``content`` as text: a string, None, or a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(p.get("text", "") for p in content if isinstance(p.get("text", ""), str))
    raise _shape_error("choices[0].message.content", "a string or null", content)


def _check_tool_calls(tool_calls: Any) -> list[dict] | None:
    if tool_calls is None or tool_calls == []:
        return None
    if not isinstance(tool_calls, list):
        raise _shape_error("choices[0].message.tool_calls", "a list", tool_calls)
    for i, call in enumerate(tool_calls):
        where = f"choices[0].message.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise _shape_error(f"{where}.function", "an object", function)
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _shape_error(f"{where}.function.name", "a non-empty string", function.get("name"))
        if not isinstance(function.get("arguments", "{}"), (str, dict)):
            raise _shape_error(f"{where}.function.arguments", "a JSON string", function["arguments"])
    if _nesting(tool_calls) > MAX_NESTING:
        raise ValueError(f"wrong shape: choices[0].message.tool_calls nest more than {MAX_NESTING} levels deep")
    return tool_calls


def _nesting(value: Any) -> int:
    """How many levels of lists and objects ``value`` holds (counted without recursion), JSON text
    in a call's ``arguments`` string included."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str) and item.lstrip()[:1] in ("{", "["):
            item = _opened(item)
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_NESTING:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _opened(text: str) -> Any:
    """The JSON a string holds, or the string itself (what the call parser will meet in it)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def parse_chat_completion(data: Any) -> Generation:
    """A decoded ``/chat/completions`` answer as a Generation; ``ValueError`` (one line) when the
    shape is wrong. ``tool_calls`` are kept as received; an empty list counts as none."""
    if not isinstance(data, dict):
        raise _shape_error("the body", "a JSON object", data)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _shape_error("choices", "a non-empty list of objects", choices)
    message = choices[0].get("message")
    if not isinstance(message, dict) or not ("content" in message or "tool_calls" in message):
        raise _shape_error("choices[0].message", "an object with content or tool_calls", message)
    meta = {"finish_reason": choices[0].get("finish_reason")}
    if isinstance(data.get("usage"), dict):
        meta["usage"] = data["usage"]
    return Generation(text=_message_text(message.get("content")),
                      tool_calls=_check_tool_calls(message.get("tool_calls")), meta=meta)
