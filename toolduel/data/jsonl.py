"""JSONL samples: OpenAI chat records, xLAM records, or toolduel's own sample records.

One JSON object a line, told apart by its keys:

- OpenAI chat: ``{"messages": [...], "tools": [...]}``. The last assistant message is the
  gold: its ``tool_calls`` are the gold calls (no ``tool_calls``: no tool fits); the
  messages before it are the prompt.
- xLAM: ``{"query": "...", "tools": [...], "answers": [{"name", "arguments"}]}`` (tools and
  answers may be JSON strings, as in the published files).
- toolduel: ``{"id", "tools", "messages", "gold"}`` as written by ``Sample.to_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolduel.config import ConfigError, regular_file
from toolduel.data.bfcl import DataError
from toolduel.schema import Call, GoldCall, Sample, SchemaError, Tool, sample_id


@dataclass
class LoadReport:
    """Samples read, and the records skipped (``"file:line: reason"``) when asked to skip."""

    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _decoded(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise SchemaError(f"{what} is a string that is not valid JSON ({err.msg})") from None
    return value


def _arguments(raw: Any, name: str) -> dict:
    arguments = _decoded(raw if raw is not None else {}, f"arguments of {name!r}")
    if not isinstance(arguments, dict):
        raise SchemaError(f"arguments of {name!r} must be an object")
    return arguments


def _gold_from_calls(calls: list[Call], tools: list[Tool]) -> list[GoldCall]:
    by_name = {t.name: t for t in tools}
    for call in calls:
        if call.name not in by_name:
            raise SchemaError(f"gold call {call.name!r} is not among the tools")
    return [GoldCall.from_call(c, by_name[c.name]) for c in calls]


def _from_openai(record: dict, default_id: str) -> Sample:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise SchemaError("'messages' must be a non-empty list of objects")
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last_assistant is None:
        raise SchemaError("no assistant message to take the gold answer from")
    tools = [Tool.from_any(t) for t in _decoded(record.get("tools", []), "'tools'")]
    calls = []
    for tool_call in messages[last_assistant].get("tool_calls") or []:
        function = tool_call.get("function", tool_call) if isinstance(tool_call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise SchemaError(f"tool call without a function name: {str(tool_call)[:80]!r}")
        calls.append(Call(function["name"], _arguments(function.get("arguments"), function["name"])))
    gold = _gold_from_calls(calls, tools)
    if last_assistant == 0:
        raise SchemaError("no message before the assistant's answer to prompt the model with")
    return Sample(id=sample_id(record.get("id", default_id)), tools=tools, messages=messages[:last_assistant],
                  gold=gold, category=record.get("category", "jsonl"),
                  meta={"source": "openai-jsonl"})


def _from_xlam(record: dict, default_id: str) -> Sample:
    tools = [Tool.from_any(t) for t in _decoded(record["tools"], "'tools'")]
    answers = _decoded(record["answers"], "'answers'")
    if not isinstance(answers, list):
        raise SchemaError("'answers' must be a list of calls")
    calls = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise SchemaError(f"answer without a function name: {str(answer)[:80]!r}")
        calls.append(Call(answer["name"], _arguments(answer.get("arguments"), answer["name"])))
    if not isinstance(record["query"], str) or not record["query"].strip():
        raise SchemaError("'query' must be non-empty text")
    return Sample(id=sample_id(record.get("id", default_id)), tools=tools,
                  messages=[{"role": "user", "content": record["query"]}],
                  gold=_gold_from_calls(calls, tools), category=record.get("category", "jsonl"),
                  meta={"source": "xlam-jsonl"})


MAX_DEPTH = 32  # no tool schema or call a model is asked for nests deeper


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels (walked without
    recursion: a record 700 levels deep loads, then breaks whatever recurses over it later)."""
    level = [value]
    for _ in range(limit + 1):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def record_to_sample(record: Any, default_id: str) -> Sample:
    """One decoded JSONL record -> a Sample, whichever of the three formats it is."""
    if not isinstance(record, dict):
        raise SchemaError(f"a record must be a JSON object, got {type(record).__name__}")
    try:
        if "gold" in record:
            return Sample.from_dict(record)
        if "messages" in record:
            return _from_openai(record, default_id)
        if "query" in record and "answers" in record:
            return _from_xlam(record, default_id)
    except (KeyError, TypeError, AttributeError) as err:
        raise SchemaError(f"malformed record ({type(err).__name__}: {err})") from None
    raise SchemaError("unknown record format: expected 'messages' (OpenAI chat), "
                      "'query'+'answers' (xLAM) or 'gold' (toolduel)")


def load_jsonl(path: str | Path, limit: int | None = None, skip_bad: bool = False) -> LoadReport:
    """Read samples from ``path``. A bad record raises :class:`DataError` naming file and line,
    unless ``skip_bad``: then it is skipped and listed in ``LoadReport.skipped``."""
    path = Path(path)
    try:
        regular_file(path, "data file")
    except ConfigError as err:
        raise DataError(str(err)) from None
    report = LoadReport()
    lines_of: dict[str, int] = {}  # sample id -> the line it was read from
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if limit is not None and len(report.samples) >= limit:
                break
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                if _too_deep(record):
                    raise SchemaError(f"nests lists and objects more than {MAX_DEPTH} levels deep")
                if _has_lone_surrogate(record):
                    raise SchemaError("holds a lone surrogate (an escaped \\ud800-\\udfff that is no character)")
                sample = record_to_sample(record, default_id=f"{path.stem}-{number}")
                if any(_too_deep(gold.arguments) for gold in sample.gold):  # arguments held as JSON text
                    raise SchemaError(f"nests lists and objects more than {MAX_DEPTH} levels deep")
                if sample.id in lines_of:
                    raise DataError(f"{path}:{number}: id {sample.id!r} was already used on line "
                                    f"{lines_of[sample.id]}; every sample needs its own id")
                lines_of[sample.id] = number
                report.samples.append(sample)
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            except json.JSONDecodeError as err:
                problem = f"not valid JSON ({err.msg} at column {err.colno})"
            except (SchemaError, RecursionError) as err:
                problem = str(err) or type(err).__name__
            except ValueError as err:  # e.g. an integer of more digits than Python converts
                problem = f"not readable ({str(err).splitlines()[0][:120]})"
            else:
                continue
            where = f"{path}:{number}: {problem}"
            if not skip_bad:
                raise DataError(where + " (pass --skip-bad to skip such records)")
            report.skipped.append(where)
    return report
