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

from toolduel.prompts import EDIT_MOVE_KEY, TOOL_CANDIDATES_KEY
from toolduel.referee.outcome import TOOL_MOVE_KEY
from toolduel.referee.tool_grammar import renamed_gold, renamed_tool
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.catalog import Function
from toolduel.world.functions import domains, functions_by_name

TOOL_MOVES = ("distractors", "masked_names", "renamed_parameters", "reworded", "reordered")
UNCHANGED = "unchanged"  # the move that leaves the tool list as it is


def _look_alikes(tools: list[Tool], targets: set[str]) -> list[Function]:
    """The functions of the ``targets``' domains that ``tools`` does not offer."""
    offered, by_name = {t.name for t in tools}, functions_by_name()
    return [f for domain in sorted({by_name[n].domain for n in targets}) for f in domains()[domain]
            if f.name not in offered]


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
        look_alikes = _look_alikes(tools, targets)
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
        tools = [renamed_tool(t, name=names[t.name]) for t in tools]
    elif move == "renamed_parameters":
        if not any(c.arguments for c in calls):  # no argument to say under a new name
            return None
        for tool in tools:
            if tool.name in targets:
                params[tool.name] = {old: f"arg_{i}" for i, old in enumerate(tool.properties, 1)}
        tools = [renamed_tool(t, params=params.get(t.name)) for t in tools]
    else:  # reworded
        by_name = functions_by_name()
        tools = [renamed_tool(t, description=rng.choice(by_name[t.name].alt_intents).rstrip("?.") + ".")
                 if t.name in targets else t for t in tools]
    original = {t.name: t for t in sample.tools}
    gold = [renamed_gold(GoldCall.from_call(c, original[c.name]), names.get(c.name), params.get(c.name))
            for c in calls]
    return dataclasses.replace(sample, tools=tools, gold=gold, meta={**sample.meta, TOOL_MOVE_KEY: move})


def tool_candidates(sample: Sample) -> list[Tool]:
    """The tools an edit the query model writes may add to a world request's list: its gold
    functions' look-alikes (``add``, :mod:`toolduel.referee.tool_grammar`)."""
    if not sample.gold or not sample.meta.get("request"):
        return []
    return [f.tool() for f in _look_alikes(sample.tools, {c["name"] for c in sample.meta["request"]})]


def move_asked(sample: Sample, move: str | None) -> dict:
    """The meta that asks the query model to write ``move`` on ``sample``'s tool list: the move
    (``meta["edit_move"]``, None: none asked) and the look-alikes its ``add`` edits may name, as
    the prompt shows them (:func:`toolduel.prompts.query_model_messages`)."""
    return {EDIT_MOVE_KEY: move, TOOL_CANDIDATES_KEY: [t.to_openai() for t in tool_candidates(sample)]}


def written_edits(sample: Sample, move: str, rng: random.Random) -> list[str] | None:
    """The edits, in the grammar of :mod:`toolduel.referee.tool_grammar`, that make ``move`` on a
    world request (adding from :func:`tool_candidates`): what the query model's warm start learns
    to write when it is asked for a move. None when the move has nothing to act on."""
    if move not in TOOL_MOVES:
        raise ValueError(f"unknown tool move {move!r}; use one of {', '.join(TOOL_MOVES)}")
    candidates = [t.name for t in tool_candidates(sample)]
    targets = list(dict.fromkeys(g.name for g in sample.gold))
    if not targets or (move in ("distractors", "reordered") and not candidates):
        return None
    if move == "distractors":
        return [f"add {name}" for name in rng.sample(candidates, min(len(candidates), 3))]
    if move == "reordered":
        return [f"add {rng.choice(candidates)}", *(f"move {name} to last" for name in targets)]
    if move == "masked_names":
        numbers = rng.sample(range(10, 100), len(sample.tools))
        return [f"rename {t.name} to tool_{n}" for t, n in zip(sample.tools, numbers)]
    if move == "renamed_parameters":  # as edit_tools: nothing to act on where no call states an argument
        tools = {t.name: t for t in sample.tools}
        stated = any(call.get("arguments") for call in sample.meta["request"])
        lines = [f"rename {name}.{param} to arg_{i}" for name in targets
                 for i, param in enumerate(tools[name].properties, 1)]
        return lines if stated and lines else None
    by_name = functions_by_name()  # reworded
    return [f"describe {name} as {rng.choice(by_name[name].alt_intents).rstrip('?.')}" for name in targets]
