"""Model output to calls: parsed, never executed (the inverse is :mod:`toolduel.calls_text`).

Formats read, in this order (``<think>...</think>`` is dropped first):

1. OpenAI structured ``tool_calls`` passed beside the text (preferred when non-empty).
2. ``<tool_call>{json}</tool_call>`` blocks (Hermes/Qwen), prose around them ignored. A
   final block left open is kept when its JSON is complete (generation stopped on the
   closing tag); any other imbalance is ``unbalanced_tag``.
3. The whole answer, or else its first fenced block, as JSON: ``{"name", "arguments"|
   "parameters"}``, a list of those, an OpenAI message ``{"tool_calls": [...]}``, or BFCL's
   ``[{"fname": {...}}]``. A whole answer that is a JSON object or list is taken as meant
   for a call, so one that is not call-shaped is ``bad_call_shape``.
4. The same, as BFCL python calls: ``[f(a=1), math.g(b="x")]`` or a bare ``f(a=1)``, read with
   ``ast.parse`` and converted from literal nodes only. An answer opening with ``name(``
   is taken as python; prose with parentheses elsewhere is not.
5. Call-shaped JSON objects inside prose (``Sure: {"name": ..., "arguments": ...}``).

Anything else is a valid "no call" answer. A failure gives ``error = "<kind>: <detail>"``
with kind one of ``invalid_json``, ``unbalanced_tag``, ``invalid_python``,
``bad_call_shape``, ``too_large``, ``bad_input``, so the weakness report can count them.
Arguments are always plain JSON data (tuples become lists; sets, bytes, NaN are refused).
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from toolduel.calls_text import is_call_name
from toolduel.schema import Call

MAX_TEXT_CHARS = 1_000_000  # longer answers are refused unread (bytes input: counted in bytes)
MAX_DEPTH = 100  # deeper arguments are refused, so later code may recurse over them safely
_MAX_FAILED_DECODES = 32  # failed JSON decodes inside prose; bounds the work on hostile text

_TAG = re.compile(r"<(/?)tool_call>")
# A tag sequence inside a string value is written as \u003c..., so the formatted text never
# holds a literal tag that the reader would take for structure.
_PYTHON_START = re.compile(r"\[?\s*[^\W\d][\w.]*\(")  # "f(", "[f(", "[math.f(", "é(" (not "(see f(x))")
_JSON_START = re.compile(r"\{|\[\s*[\[{\]]")  # "{", "[{", "[[", "[]": clearly meant as JSON
_EMBEDDED_CALL = re.compile(r'(?:\[\s*)?\{\s*"(?:name|function|tool_calls)"\s*:')
_CALL_KEYS = {"name", "arguments", "parameters", "id", "type", "index"}


@dataclass
class ParseResult:
    """The calls found in one answer; ``calls == []`` with no error means "no call"."""

    calls: list[Call] = field(default_factory=list)
    error: str | None = None  # "<kind>: <detail>"
    format: str = "text"  # "json", "tool_call_tags", "python", "openai_tool_calls", "text"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_kind(self) -> str | None:
        """The part of ``error`` before the colon (``"invalid_json"``), for counting."""
        return None if self.error is None else self.error.split(":", 1)[0]


class _ParseError(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _snippet(text: Any, limit: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---------------------------------------------------------------- parse (text -> calls)

def parse_calls(text: str | bytes | None, tool_calls: list | None = None) -> ParseResult:
    """The calls in one model answer. Never raises, never executes anything.

    Non-empty ``tool_calls`` (OpenAI's, as received from an endpoint) win over the text; an
    empty list means the endpoint found none, so the text is read instead.
    """
    if tool_calls is not None and not (isinstance(tool_calls, (list, tuple)) and len(tool_calls) == 0):
        return parse_openai_tool_calls(tool_calls)
    if text is None:
        return ParseResult()
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_TEXT_CHARS:
            return ParseResult(error=f"too_large: {len(text)} bytes, limit {MAX_TEXT_CHARS}")
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        return ParseResult(error=f"bad_input: text must be str, bytes or None, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        return ParseResult(error=f"too_large: {len(text)} characters, limit {MAX_TEXT_CHARS}")
    return _parse_text(text)


def parse_openai_tool_calls(tool_calls: Any) -> ParseResult:
    """Read OpenAI ``tool_calls``: ``[{"type": "function", "function": {"name", "arguments"}}]``
    with ``arguments`` a JSON string (a dict is taken too). ``None`` means no call."""
    return _attempt("openai_tool_calls", _calls_from_openai, tool_calls)


def _attempt(fmt: str, parse: Any, source: Any) -> ParseResult:
    try:
        return ParseResult(parse(source), format=fmt)
    except _ParseError as error:
        return ParseResult(error=str(error), format=fmt)
    except (RecursionError, MemoryError):
        return ParseResult(error="too_large: nested too deeply to parse", format=fmt)


def _parse_text(text: str) -> ParseResult:
    body = _strip_think(text)
    if _TAG.search(body):
        return _attempt("tool_call_tags", _calls_from_tags, body)
    # The whole answer first (a JSON string value may hold a fence), then its first fenced block.
    block = _fenced_block(body)
    json_error = None
    for candidate in [body] + ([block] if block is not None else []):
        result, error = _parse_whole(candidate.strip())
        if result is not None:
            return result
        json_error = json_error or error
    result = _attempt("json", _calls_in_prose, body)
    if json_error is not None and not result.calls:  # the whole answer's own error says more
        return ParseResult(error=str(json_error), format="json")
    return result if result.calls or result.error else ParseResult()


def _parse_whole(candidate: str) -> tuple[ParseResult | None, _ParseError | None]:
    """The result when the whole candidate is JSON or a python call, else the JSON error
    to report if nothing else is found (only for text that clearly meant to be JSON)."""
    json_error = None
    if candidate[:1] in ("{", "["):
        try:
            value = _load_json(candidate)
        except _ParseError as error:
            json_error = error if _JSON_START.match(candidate) else None
        else:
            return _attempt("json", _calls_from_json, value), None
    if _PYTHON_START.match(candidate):
        return _attempt("python", _calls_from_python, candidate), None
    return None, json_error


def _strip_think(text: str) -> str:
    """The text outside ``<think>...</think>``. A ``</think>`` with no opening (the chat
    template opened it) drops all before it; an unclosed ``<think>`` (generation stopped while
    thinking) drops all after it. Plain ``find`` keeps this linear on hostile text."""
    first_open, first_close = text.find("<think>"), text.find("</think>")
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        text = text[first_close + len("</think>"):]
    kept, pos = [], 0
    while (start := text.find("<think>", pos)) != -1:
        kept.append(text[pos:start])
        end = text.find("</think>", start)
        if end == -1:
            return "".join(kept)
        pos = end + len("</think>")
    kept.append(text[pos:])
    return "".join(kept)


def _fenced_block(text: str) -> str | None:
    """The content of the first ```lang ... ``` block (to the end if never closed)."""
    start = text.find("```")
    if start == -1:
        return None
    content_start = start + 3
    newline = text.find("\n", content_start)
    if newline != -1 and re.fullmatch(r"[\w+.-]*\s*", text[content_start:newline]):
        content_start = newline + 1  # skip the language tag line ("json", "python", "tool_code")
    end = text.find("```", content_start)
    return text[content_start:] if end == -1 else text[content_start:end]


def _float_or_refuse(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):  # "1e999" would be inf
        raise ValueError(f"number {number} is out of range")
    return value


def refuse_constant(name: str) -> Any:
    """NaN, Infinity and -Infinity, which Python's parser takes and JSON does not hold."""
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_float_or_refuse, parse_constant=refuse_constant)


def _load_json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise _ParseError("too_large", "JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, refused constants, int digit limit
        raise _ParseError("invalid_json", f"{error} in {_snippet(text)}") from None


def _calls_from_tags(body: str) -> list[Call]:
    calls: list[Call] = []
    opened = None  # the <tool_call> of the block now open
    for match in _TAG.finditer(body):
        if match.group(1) != "/":
            if opened is not None:
                raise _ParseError("unbalanced_tag", f"<tool_call> at offset {match.start()} inside an open block")
            opened = match
        else:
            if opened is None:
                raise _ParseError("unbalanced_tag", f"</tool_call> at offset {match.start()} closes nothing")
            calls.extend(_calls_from_block(body[opened.end():match.start()]))
            opened = None
    if opened is not None:
        # Generation often stops on "</tool_call>" itself: a final block is kept if its JSON is whole.
        try:
            calls.extend(_calls_from_block(body[opened.end():]))
        except _ParseError as error:
            if error.kind != "invalid_json":
                raise
            raise _ParseError("unbalanced_tag", f"<tool_call> at offset {opened.start()} is never closed") from None
    return calls


def _calls_from_block(content: str) -> list[Call]:
    if not content.strip():
        raise _ParseError("invalid_json", "empty <tool_call> block")
    return _calls_from_json(_load_json(content.strip()))


def _calls_in_prose(region: str) -> list[Call]:
    """Call-shaped JSON objects (or lists of them) anywhere in the text, in order. JSON that
    is not call-shaped is prose; a call-shaped start that never decodes is invalid_json."""
    calls: list[Call] = []
    failures: list[str] = []
    pos = 0
    # A decode that succeeds moves past what it read; only failures can rescan text, so only
    # they are capped.
    while len(failures) < _MAX_FAILED_DECODES and (match := _EMBEDDED_CALL.search(region, pos)):
        decoded = _decode_at(region, match.start())
        if decoded is None and match.group().startswith("["):  # "[" was prose: try the object alone
            decoded = _decode_at(region, match.start() + match.group().index("{"))
        if decoded is None:
            failures.append(_snippet(region[match.start():]))
            pos = match.end()
            continue
        value, pos = decoded
        if _looks_like_call(value):
            calls.extend(_calls_from_json(value))
    if not calls and failures:
        raise _ParseError("invalid_json", f"call-shaped JSON does not decode: {failures[0]}")
    return calls


def _decode_at(text: str, start: int) -> tuple[Any, int] | None:
    try:
        return _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None


def _looks_like_call(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, dict) and (
        "tool_calls" in item or isinstance(item.get("function"), dict)
        or ("name" in item and ("arguments" in item or "parameters" in item))) for item in items)


def _calls_from_json(value: Any) -> list[Call]:
    if isinstance(value, dict) and "tool_calls" in value:  # an OpenAI message
        return _calls_from_openai(value["tool_calls"])
    items = value if isinstance(value, list) else [value]
    return [_call_from_object(item) for item in items]


def _call_from_object(item: Any) -> Call:
    if not isinstance(item, dict):
        raise _ParseError("bad_call_shape", f"expected a call object, got {type(item).__name__} {_snippet(item)}")
    if "function" in item:
        return _call_from_openai_item(item)
    if "name" in item:
        extra = sorted(set(item) - _CALL_KEYS)
        if extra:
            raise _ParseError("bad_call_shape", f"unexpected keys {extra} beside 'name'")
        if "arguments" in item and "parameters" in item:
            raise _ParseError("bad_call_shape", "both 'arguments' and 'parameters' given")
        return _make_call(item["name"], item.get("arguments", item.get("parameters")))
    if len(item) == 1 and isinstance(next(iter(item.values())), dict):  # BFCL: {"fname": {...}}
        (name, arguments), = item.items()
        return _make_call(name, arguments)
    raise _ParseError("bad_call_shape", f"object is not a call: {_snippet(item)}")


def _calls_from_openai(tool_calls: Any) -> list[Call]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, (list, tuple)):
        raise _ParseError("bad_call_shape", f"tool_calls must be a list, got {type(tool_calls).__name__}")
    return [_call_from_openai_item(item) for item in tool_calls]


def _call_from_openai_item(item: Any) -> Call:
    if not isinstance(item, dict) or not isinstance(item.get("function"), dict):
        raise _ParseError("bad_call_shape", f"tool call needs a 'function' object, got {_snippet(item)}")
    if item.get("type", "function") != "function":
        raise _ParseError("bad_call_shape", f"tool call type {_snippet(item['type'])} is not 'function'")
    function = item["function"]
    return _make_call(function.get("name"), function.get("arguments"))


def _make_call(name: Any, arguments: Any) -> Call:
    if not is_call_name(name):
        raise _ParseError("bad_call_shape", f"call name must be a non-blank string, got {_snippet(name)}")
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        arguments = {}  # some servers send "" or null for a call without arguments
    elif isinstance(arguments, str):  # OpenAI's JSON-encoded arguments
        arguments = _load_json(arguments)
    if not isinstance(arguments, dict):
        raise _ParseError("bad_call_shape", f"arguments of {name!r} must be an object, got {_snippet(arguments)}")
    _check_depth(arguments)
    return Call(name=name, arguments=arguments)


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]  # iterative: the guard itself must not recurse
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _ParseError("too_large", f"arguments nested deeper than {MAX_DEPTH}")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _calls_from_python(source: str) -> list[Call]:
    try:
        with warnings.catch_warnings():  # invalid escapes like "C:\d" warn; the string is still read
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as error:  # ValueError: null bytes, surrogates, digit limit
        raise _ParseError("invalid_python", f"{type(error).__name__}: {error}") from None
    node = tree.body
    elements = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    return [_call_from_ast(element) for element in elements]


def _call_from_ast(node: ast.AST) -> Call:
    if not isinstance(node, ast.Call):
        raise _ParseError("invalid_python", f"expected a call, got {type(node).__name__}")
    name = _dotted_name(node.func)
    if node.args:
        raise _ParseError("bad_call_shape", "positional arguments are not allowed; name each argument")
    arguments = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise _ParseError("invalid_python", "'**' unpacking is not a literal argument")
        arguments[kw.arg] = _literal(kw.value)
    return _make_call(name, arguments)


def _dotted_name(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise _ParseError("invalid_python", f"called object is a {type(node).__name__}, not a name")
    parts.append(node.id)
    return ".".join(reversed(parts))


_LITERAL_TYPES = (str, int, float, bool, type(None))


def _literal(node: ast.AST) -> Any:
    """JSON data from a literal node; anything that would need evaluating is refused."""
    if isinstance(node, ast.Constant) and type(node.value) in _LITERAL_TYPES:
        if isinstance(node.value, float) and not math.isfinite(node.value):
            raise _ParseError("invalid_python", "number out of range")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        value = _literal(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):  # tuples become lists: arguments are JSON data
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        result = {}
        for key, value in zip(node.keys, node.values):
            if key is None or not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise _ParseError("invalid_python", "dict keys must be string literals")
            result[key.value] = _literal(value)
        return result
    raise _ParseError("invalid_python", f"{type(node).__name__} is not a literal value")
