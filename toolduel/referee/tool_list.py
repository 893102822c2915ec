"""The referee's check of an edited tool list: do the seed's gold calls stay the one right answer?

An attack on the tool surface (:mod:`toolduel.specs`) answers a query against the seed's tool
list edited by a move, with the gold calls renamed to match. The edit must preserve the oracle;
:func:`check_tool_edit` names each way it can fail, one rejection reason each:

- ``tool_edit_unmatched``: a gold call names a function the edited list lacks, an argument its
  function does not take, or leaves out one it requires (a rename applied to the tools but not
  to the gold calls, or the other way round);
- ``tool_edit_changed_gold``: the edited gold calls ask for other calls or other values than the
  seed's (names aside: a rename may change those);
- ``tool_edit_changed_schema``: a gold argument's type or allowed values changed with its name;
- ``tool_edit_duplicate``: two tools of the edited list share a name;
- ``tool_edit_distractor_serves``: the edited list has more tools for a gold function's purpose
  than the seed's had (a look-alike that could serve the request as well as the gold function).

A tool's purpose is what :attr:`~toolduel.referee.validity.Lexicon.purpose` says: by default its
description (without the parameter notes that a rename appends), for the embedded world the
function it is, whatever its name or wording.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from toolduel.schema import GoldCall, Tool

REASONS = {
    "tool_edit_unreadable": "the edited tools or gold calls are not readable",
    "tool_edit_unmatched": "a gold call does not fit the edited list (a function, an argument, a required one)",
    "tool_edit_changed_gold": "the edited gold calls ask for other calls or values than the seed's",
    "tool_edit_changed_schema": "a gold argument's type or allowed values changed",
    "tool_edit_duplicate": "two tools share a name",
    "tool_edit_distractor_serves": "a tool added for a gold function's purpose could serve the request",
}
# What a rename appends to a description (toolduel.world.tool_edits): notes, not purpose.
PARAMETER_NOTES = re.compile(r"\.?\s*Parameters:.*$", re.S)


def described_purpose(tool: Tool) -> str:
    """A tool's purpose as its description says it: lower-cased, punctuation and parameter notes dropped."""
    text = PARAMETER_NOTES.sub("", tool.description or "")
    return " ".join(re.findall(r"[a-z0-9]+", text.lower())) or tool.name


def read_edit(tools: list[Any], gold: list[Any]) -> tuple[list[Tool], list[GoldCall]]:
    """The edited tools and gold calls as a seed's meta carries them (OpenAI tools, BFCL gold)."""
    return [Tool.from_any(t) for t in tools], [GoldCall.from_bfcl(g) for g in gold]


def _values(call: GoldCall) -> list[str]:
    return sorted(json.dumps(values, sort_keys=True, default=str) for values in call.arguments.values())


def _kind(spec: Any) -> tuple[str, str]:
    spec = spec if isinstance(spec, dict) else {}
    return json.dumps(spec.get("type")), json.dumps(spec.get("enum"), default=str)


def _fits(tools: dict[str, Tool], call: GoldCall) -> bool:
    """Whether ``call`` names a tool of ``tools``, only its arguments, and every one it requires."""
    tool = tools.get(call.name)
    if tool is None or set(call.arguments) - set(tool.properties):
        return False
    return all(param in call.arguments and "" not in call.arguments[param] for param in tool.required)


def _unmatched(seed_tools: dict[str, Tool], seed_gold: list[GoldCall], tools: dict[str, Tool],
               gold: list[GoldCall]) -> bool:
    """Whether a gold call that fit the seed's list does not fit the edited one (a seed whose own
    gold does not fit its tools, as a few BFCL records' do, is not the edit's doing)."""
    if len(gold) != len(seed_gold):
        return not all(_fits(tools, call) for call in gold)
    return any(_fits(seed_tools, before) and not _fits(tools, after) for before, after in zip(seed_gold, gold))


def _schema_changed(seed_tools: dict[str, Tool], seed_gold: list[GoldCall], tools: dict[str, Tool],
                    gold: list[GoldCall]) -> bool:
    """Whether some gold argument, paired with the seed's by the order of calls and of values, changed type or enum."""
    for before, after in zip(seed_gold, gold):
        old_tool, new_tool = seed_tools.get(before.name), tools.get(after.name)
        if old_tool is None or new_tool is None:
            continue
        old = sorted((json.dumps(v, sort_keys=True, default=str), _kind(old_tool.properties.get(k)))
                     for k, v in before.arguments.items())
        new = sorted((json.dumps(v, sort_keys=True, default=str), _kind(new_tool.properties.get(k)))
                     for k, v in after.arguments.items())
        if old != new:
            return True
    return False


def check_tool_edit(seed_tools: list[Tool], seed_gold: list[GoldCall], tools: list[Tool], gold: list[GoldCall],
                    purpose=described_purpose) -> list[str]:
    """The reasons (``"type: detail"``, types in :data:`REASONS`) the edit of ``seed_tools`` and
    ``seed_gold`` into ``tools`` and ``gold`` breaks the oracle; empty when the gold calls stay the
    one right answer. ``purpose`` maps a tool to what it is for (two tools with one purpose can
    serve the same request)."""
    reasons = []
    by_name, seed_by_name = {t.name: t for t in tools}, {t.name: t for t in seed_tools}
    if len(by_name) < len(tools):
        reasons.append("tool_edit_duplicate")
    if _unmatched(seed_by_name, seed_gold, by_name, gold):
        reasons.append("tool_edit_unmatched")
    same_calls = len(gold) == len(seed_gold) and sorted(map(_values, gold)) == sorted(map(_values, seed_gold))
    if not same_calls:
        reasons.append("tool_edit_changed_gold")
    elif _schema_changed(seed_by_name, seed_gold, by_name, gold):
        reasons.append("tool_edit_changed_schema")
    before, after = Counter(map(purpose, seed_tools)), Counter(map(purpose, tools))
    gold_purposes = {purpose(by_name[c.name]) for c in gold if c.name in by_name}
    if any(after[p] > max(before[p], 1) for p in gold_purposes):
        reasons.append("tool_edit_distractor_serves")
    return [f"{reason}: {REASONS[reason]}" for reason in reasons]
