"""Calls to text, in each format :mod:`toolduel.parsing` reads back: ``<tool_call>`` blocks,
a JSON list, or BFCL's python calls. What the FC model is trained to answer is written here.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import unicodedata
from typing import Any

from toolduel.schema import Call

FORMAT_STYLES = ("tool_call_tags", "json", "python")
_TAG_IN_STRING = re.compile(r"<(/?(?:tool_call|think)>)")  # escaped in strings, so no text inside a value opens a tag


def format_calls(calls: list[Call], style: str = "tool_call_tags") -> str:
    """Write calls as a model should: the inverse of :func:`toolduel.parsing.parse_calls` for each style.

    ``tool_call_tags``: one ``<tool_call>\\n{json}\\n</tool_call>`` block per call (Qwen/Hermes).
    ``json``: a JSON list of ``{"name", "arguments"}``. ``python``: BFCL's ``[f(a=1), g(b="x")]``.
    No calls gives ``""`` (tags) or ``"[]"``. Raises ``ValueError`` for a call the style
    cannot write (NaN, a non-JSON value, a name that is no Python identifier in ``python``).
    """
    if style not in FORMAT_STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(FORMAT_STYLES)}")
    for call in calls:
        if not is_call_name(call.name) or not isinstance(call.arguments, dict):
            raise ValueError(f"cannot write {call!r}: needs a non-blank name and a dict of arguments")
    if style == "python":
        return "[" + ", ".join(_python_call(call) for call in calls) + "]"
    if style == "json":
        return _json_text([call.to_dict() for call in calls])
    return "\n".join(f"<tool_call>\n{_json_text(call.to_dict())}\n</tool_call>" for call in calls)


def _json_text(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:  # numpy scalars, sets, NaN, ...
        raise ValueError(f"cannot write as JSON: {error}") from error
    return _TAG_IN_STRING.sub(r"\\u003c\1", text)  # "<" only occurs inside strings in JSON text


def is_call_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name.strip())


def _is_python_name(name: str) -> bool:
    # Python normalises identifiers to NFKC, so only those already normal read back unchanged;
    # the \w match keeps to the names _PYTHON_START recognises (it leaves out e.g. "·").
    return name.isidentifier() and not keyword.iskeyword(name) and bool(re.fullmatch(r"[^\W\d]\w*", name)) \
        and unicodedata.normalize("NFKC", name) == name


def _python_call(call: Call) -> str:
    if not all(_is_python_name(part) for part in call.name.split(".")):
        raise ValueError(f"{call.name!r} is not a Python name; use style 'json' or 'tool_call_tags'")
    for name in call.arguments:
        if not isinstance(name, str) or not _is_python_name(name):
            raise ValueError(f"argument {name!r} of {call.name!r} is not a Python identifier")
    args = ", ".join(f"{name}={_python_literal(value)}" for name, value in call.arguments.items())
    return f"{call.name}({args})"


def _python_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return int.__repr__(value)  # plain repr, also for int subclasses
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as a Python literal")
        return float.__repr__(value)
    if isinstance(value, str):
        # A JSON string is a Python string literal; surrogates need escapes to survive ast.parse.
        has_surrogate = any("\ud800" <= ch <= "\udfff" for ch in value)
        return _TAG_IN_STRING.sub(r"\\u003c\1", json.dumps(value, ensure_ascii=has_surrogate))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("cannot write a dict with non-string keys")
        return "{" + ", ".join(f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write a {type(value).__name__} as a Python literal")
