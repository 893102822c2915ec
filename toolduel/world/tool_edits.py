"""Edits of a world sample's tool list that keep its gold calls the one right answer.

The tool list is an attack surface of its own: an FC model that reads requests well may still
lean on a function's name, a parameter's name, a description's wording or a tool's place in
the list. Each move here changes one of those and nothing the request needs:

- ``distractors``: more functions of the gold function's domain (look-alikes; in the world no
  two functions serve the same intent, so none of them can serve the request);
- ``masked_names``: every function renamed to an opaque ``tool_<n>``, the gold calls with them
  (the descriptions still say what each does);
- ``renamed_parameters``: the gold function's parameters renamed ``arg_1``, ``arg_2``, ... in
  its schema and its gold calls, each described by what its old name said, in its schema and in
  the function's description (a template that shows no parameter descriptions, such as the
  compact one of :mod:`toolduel.chat_templates`, still shows which is which);
- ``reworded``: the gold function's description replaced by one of its paraphrase intents;
- ``reordered``: the gold functions moved to the end of a list that has grown by a distractor.

:func:`edit_tools` applies a move to a sample made by :func:`toolduel.world.generator.make_sample`
(whose ``meta["request"]`` keeps the calls); the held-out set ``tools``
(:mod:`toolduel.world.heldout`) holds plain one-call requests, each with one move.
"""

from __future__ import annotations

import dataclasses
import random

from toolduel.referee.outcome import TOOL_MOVE_KEY
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.functions import domains, functions_by_name

TOOL_MOVES = ("distractors", "masked_names", "renamed_parameters", "reworded", "reordered")
UNCHANGED = "unchanged"  # the move that leaves the tool list as it is


def _renamed_tool(tool: Tool, name: str | None = None, params: dict[str, str] | None = None,
                  description: str | None = None) -> Tool:
    """``tool`` under another name, with parameters renamed (``params``: old -> new) or another description."""
    params = params or {}
    properties, said = {}, []
    for old, spec in tool.properties.items():
        spec = dict(spec)
        if old in params:
            spec["description"] = spec.get("description") or old.replace("_", " ")
            said.append(f"{params[old]}: {spec['description']}")
        properties[params.get(old, old)] = spec
    description = tool.description if description is None else description
    if said:
        description = f"{description.rstrip('.')}. Parameters: {', '.join(said)}."
    return Tool(name=name or tool.name, description=description,
                parameters={**tool.parameters, "properties": properties,
                            "required": [params.get(p, p) for p in tool.required]})


def _renamed_call(call: Call, name: str | None = None, params: dict[str, str] | None = None) -> Call:
    params = params or {}
    return Call(name or call.name, {params.get(k, k): v for k, v in call.arguments.items()})


def edit_tools(sample: Sample, move: str, rng: random.Random) -> Sample | None:
    """``sample`` with its tool list edited by ``move`` (one of :data:`TOOL_MOVES`) and its gold
    calls renamed to match; None when the move has nothing to act on (no look-alike left to add, no
    argument to rename, a request that is not the world's)."""
    if move not in TOOL_MOVES:
        raise ValueError(f"unknown tool move {move!r}; use one of {', '.join(TOOL_MOVES)}")
    if sample.gold and not sample.meta.get("request"):  # not a world request: the moves know only the world's calls
        return None
    calls = [Call(c["name"], c["arguments"]) for c in sample.meta.get("request", [])] if sample.gold else []
    targets = {c.name for c in calls}
    tools, names, params = list(sample.tools), {}, {}
    if move in ("distractors", "reordered"):
        offered = {t.name for t in tools}
        by_name = functions_by_name()
        look_alikes = [f for domain in sorted({by_name[n].domain for n in targets}) for f in domains()[domain]
                       if f.name not in offered]
        if not look_alikes:
            return None
        added = rng.sample(look_alikes, min(len(look_alikes), 3 if move == "distractors" else 1))
        tools += [f.tool() for f in added]
        rng.shuffle(tools)
        if move == "reordered":
            tools = [t for t in tools if t.name not in targets] + [t for t in tools if t.name in targets]
    elif move == "masked_names":
        numbers = rng.sample(range(10, 100), len(tools))
        names = {t.name: f"tool_{n}" for t, n in zip(tools, numbers)}
        tools = [_renamed_tool(t, name=names[t.name]) for t in tools]
    elif move == "renamed_parameters":
        if not any(c.arguments for c in calls):  # no argument to say under a new name
            return None
        for tool in tools:
            if tool.name in targets:
                params[tool.name] = {old: f"arg_{i}" for i, old in enumerate(tool.properties, 1)}
        tools = [_renamed_tool(t, params=params.get(t.name)) for t in tools]
    else:  # reworded
        by_name = functions_by_name()
        tools = [_renamed_tool(t, description=rng.choice(by_name[t.name].alt_intents).rstrip("?.") + ".")
                 if t.name in targets else t for t in tools]
    edited = {t.name: t for t in tools}
    renamed = [_renamed_call(c, names.get(c.name), params.get(c.name)) for c in calls]
    gold = [GoldCall.from_call(c, edited[c.name]) for c in renamed]
    return dataclasses.replace(sample, tools=tools, gold=gold, meta={**sample.meta, TOOL_MOVE_KEY: move})
