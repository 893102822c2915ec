"""Decoded model outputs for a BFCL entry: right answers built from its ground truth, and near
misses that each exercise one rule of the checker.

``mutated_outputs`` is seeded, so a test and a benchmark that ask for the same entry and seed
get the same outputs. An output is what a decoder hands the checker: usually
``[{name: {arg: value}}]``, sometimes something that is not in that format at all.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable

from toolduel.testing.bfcl_reference import Entry


@dataclass
class _Context:
    """What a mutation may draw on: the entry's functions and every value its gold allows."""

    functions: list
    ground_truth: list
    gold_values: list  # every possible answer of every argument (for swaps)

    def spec(self, function_name: str) -> dict:
        for function in self.functions:
            if function.get("name") == function_name:
                return function.get("parameters", {}).get("properties", {})
        return {}


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (much faster than copy.deepcopy)."""
    if type(value) is list:
        return [_copy(item) for item in value]
    if type(value) is dict:
        return {key: _copy(item) for key, item in value.items()}
    return value


def _pick(answers: list, rng: random.Random, mode: str) -> Any:
    """One of the possible answers: the first, a random one, or the first that is not ``""``."""
    given = [a for a in answers if a != ""]
    if mode == "first":
        return answers[0] if answers else ""
    if mode == "random":
        return rng.choice(answers) if answers else ""
    return given[0] if given else ""


def _resolve(value: Any, rng: random.Random, mode: str) -> Any:
    """A dict answer holds possible answers per key (one level deep, in a list of dicts too)."""
    if type(value) is dict:
        picked = {key: _pick(answers, rng, mode) if type(answers) is list else answers
                  for key, answers in value.items()}
        return {key: _copy(item) for key, item in picked.items() if item != ""}
    if type(value) is list and value and all(type(item) is dict for item in value):
        return [_resolve(item, rng, mode) for item in value]
    return _copy(value)


def _answer(ground_truth: list, rng: random.Random, mode: str) -> list:
    """One right output; ``""`` (may be left out) means the argument is left out."""
    output = []
    for gold_call in ground_truth:
        (name, arguments), = gold_call.items()
        call_arguments = {}
        for param, answers in arguments.items():
            choice = _pick(answers, rng, mode)
            if choice != "":
                call_arguments[param] = _resolve(choice, rng, mode)
        output.append({name: call_arguments})
    return output


def _typed_value(spec: dict, rng: random.Random) -> Any:
    """A plausible value of a parameter's declared type."""
    type_name = spec.get("type") if isinstance(spec, dict) else None
    simple = {"string": rng.choice(["abc", "New York", "2024-01-01"]), "integer": rng.randint(0, 20),
              "float": rng.choice([0.5, 2.0, 3.75]), "boolean": rng.random() < 0.5, "any": "anything",
              "dict": {"key": "value"}}
    if type_name in ("array", "tuple"):
        return [_typed_value(spec.get("items", {}), rng) for _ in range(rng.randint(0, 2))]
    return simple.get(type_name, "value")


# ---------------------------------------------------------------- one value

def _mutate_string(text: str, context: _Context, rng: random.Random) -> Any:
    edits = [
        str.upper, str.lower, str.title, str.swapcase,  # case is ignored
        lambda s: s + " ", lambda s: s + ",", lambda s: s + ".", lambda s: " " + s,  # ignored punctuation
        lambda s: s.replace(" ", "_"), lambda s: s.replace(" ", ""), lambda s: s.replace(",", ""),
        lambda s: s.replace("'", '"'), lambda s: s.replace('"', "'"),
        lambda s: s + "!", lambda s: s[:-1], lambda s: s + "x", lambda s: "",  # real changes
        lambda s: s[: len(s) // 2] + "-" + s[len(s) // 2:],
        lambda s: int(s) if s.strip().isdigit() else len(s), lambda s: [s],
        lambda s: rng.choice([v for v in context.gold_values if type(v) is str] or ["other"]),
    ]
    return rng.choice(edits)(text)


def _mutate_number(number: Any, context: _Context, rng: random.Random) -> Any:
    edits = [lambda x: x + 1, lambda x: -x, str, float, lambda x: x + 0.5, lambda x: x * 1000,
             lambda x: [x], lambda x: None, lambda x: bool(x),
             lambda x: int(x) if math.isfinite(x) else 0,
             lambda x: rng.choice([10**30, 10**400, 10**5000, float("nan"), float("inf"), 2.0**0.5]),
             lambda x: rng.choice([v for v in context.gold_values if type(v) in (int, float)] or [7])]
    try:
        return rng.choice(edits)(number)
    except (OverflowError, ValueError):  # a huge int from an earlier edit: no float, no str
        return number


def _mutate_list(items: list, context: _Context, rng: random.Random) -> Any:
    edits = [lambda v: [], lambda v: v[1:], lambda v: v + v[:1], lambda v: v[::-1], tuple,
             lambda v: [str(i) for i in v], lambda v: [float(i) if type(i) is int else i for i in v],
             lambda v: [v], str]
    if items:
        position = rng.randrange(len(items))
        edits.append(lambda v: v[:position] + [_mutate_value(v[position], context, rng)] + v[position + 1:])
        edits.append(lambda v: v[:position] + [_mutate_value(v[position], context, rng)] + v[position + 1:])
    return rng.choice(edits)(items)


def _mutate_dict(mapping: dict, context: _Context, rng: random.Random) -> Any:
    keys = list(mapping)
    edits = [lambda d: {}, lambda d: {**d, "extra_key": "x"}, lambda d: [d], str]
    if keys:
        key = rng.choice(keys)
        edits += [lambda d: {k: v for k, v in d.items() if k != key},
                  lambda d: {(k + "_" if k == key else k): v for k, v in d.items()},
                  lambda d: {**d, key: _mutate_value(d[key], context, rng)},
                  lambda d: {**d, key: _mutate_value(d[key], context, rng)}]
    return rng.choice(edits)(mapping)


def _mutate_value(value: Any, context: _Context, rng: random.Random) -> Any:
    """A changed value: a different one, the same one typed differently, or an edit of its
    parts (case, punctuation, items, keys)."""
    if rng.random() < 0.12:  # another possible answer of the entry (sometimes still right)
        return _copy(rng.choice(context.gold_values)) if context.gold_values else None
    if type(value) is str:
        return _mutate_string(value, context, rng)
    if type(value) is bool:
        return rng.choice([not value, int(value), str(value), "true", None])
    if type(value) in (int, float):
        return _mutate_number(value, context, rng)
    if type(value) is list:
        return _mutate_list(value, context, rng)
    if type(value) is dict:
        return _mutate_dict(value, context, rng)
    return rng.choice(["None", 0, "", [value], {"value": value}])


# ---------------------------------------------------------------- one call's arguments, then calls

def _random_call(output: list, rng: random.Random) -> tuple[str, dict] | None:
    calls = [call for call in output if type(call) is dict and len(call) == 1
             and type(next(iter(call.values()))) is dict]
    if not calls:
        return None
    (name, arguments), = rng.choice(calls).items()
    return name, arguments


def _change_argument(output: list, context: _Context, rng: random.Random) -> list:
    picked = _random_call(output, rng)
    if picked is None or not picked[1]:
        return output
    name, arguments = picked
    param = rng.choice(list(arguments))
    edit = rng.choice(["value", "value", "value", "value", "drop", "rename", "swap"])
    if edit == "value":
        arguments[param] = _mutate_value(arguments[param], context, rng)
    elif edit == "drop":
        del arguments[param]
    elif edit == "rename":
        others = [p for p in context.spec(name) if p not in arguments]
        arguments[rng.choice(others) if others and rng.random() < 0.5 else param + "_1"] = arguments.pop(param)
    else:
        other = rng.choice(list(arguments))
        arguments[param], arguments[other] = arguments[other], arguments[param]
    return output


def _add_argument(output: list, context: _Context, rng: random.Random) -> list:
    picked = _random_call(output, rng)
    if picked is None:
        return output
    name, arguments = picked
    spec = context.spec(name)
    unused = [p for p in spec if p not in arguments]
    if unused and rng.random() < 0.7:  # a declared parameter the gold may or may not want
        param = rng.choice(unused)
        gold = next((g[name] for g in context.ground_truth if name in g), {})
        answers = [a for a in gold.get(param, []) if a != ""]
        arguments[param] = _copy(rng.choice(answers)) if answers and rng.random() < 0.5 \
            else rng.choice(["", _typed_value(spec[param], rng)])
    else:
        arguments["unexpected_param"] = rng.choice([1, "x", None])
    return output


def _change_calls(output: list, context: _Context, rng: random.Random) -> Any:
    names = [f.get("name") for f in context.functions]
    if not output:
        return [{rng.choice(names): {}}] if names else output
    index, other = rng.randrange(len(output)), rng.randrange(len(output))
    edit = rng.choice(["shuffle", "drop", "duplicate", "rename", "rename", "swap_names", "extra_call"])
    if edit == "shuffle":
        rng.shuffle(output)
    elif edit == "drop":
        del output[index]
    elif edit == "duplicate":
        output.insert(index, _copy(output[index]))
    elif edit == "rename" and len(output[index]) == 1:
        (name, arguments), = output[index].items()
        output[index] = {rng.choice(names + [name + "_v2", name.upper(), name.replace(".", "_")]): arguments}
    elif edit == "swap_names" and len(output[index]) == 1 and len(output[other]) == 1:
        (name, arguments), = output[index].items()
        (other_name, other_arguments), = output[other].items()
        output[index], output[other] = {other_name: arguments}, {name: other_arguments}
    elif edit == "extra_call":
        function = rng.choice(context.functions)
        properties = function.get("parameters", {}).get("properties", {})
        output.append({function["name"]: {p: _typed_value(s, rng) for p, s in properties.items()
                                          if rng.random() < 0.5}})
    return output


def _break_format(output: list, context: _Context, rng: random.Random) -> Any:
    """Outputs a decoder might hand over that are not a list of ``{name: {arg: value}}``."""
    first = output[0] if output else {"f": {}}
    choices = [[], None, "I cannot help with that.", [{}], first, [[first]], (first,),
               [{"f": "not a dict"}], [{**first, "another": {}}] if type(first) is dict else [first], [first, 3]]
    return rng.choice(choices)


_MUTATIONS: list[Callable[[Any, _Context, random.Random], Any]] = (
    [_change_argument] * 6 + [_add_argument] * 2 + [_change_calls] * 2 + [_break_format])


def _no_gold_outputs(functions: list, rng: random.Random, count: int) -> list:
    """For an entry where no function fits (or any call passes): calls, and outputs that are none."""
    outputs: list[Any] = [[], None, "There is no function for that.", [{}], [{"f": "x"}], [[]]]
    while len(outputs) < count:
        calls = []
        for _ in range(rng.choice([1, 1, 2])):
            function = rng.choice(functions) if functions else {"name": "made_up"}
            properties = function.get("parameters", {}).get("properties", {})
            calls.append({function.get("name", "f"): {p: _typed_value(s, rng) for p, s in properties.items()
                                                      if rng.random() < 0.6}})
        outputs.append(calls)
    return outputs


def mutated_outputs(entry: Entry, count: int, seed: int = 0) -> list[Any]:
    """``count`` decoded outputs for ``entry``: three right answers first, then mutations of them
    (one edit, or two in a quarter of the cases)."""
    rng = random.Random(f"{seed}:{entry.category}:{entry.id}")  # str seeds are stable across runs
    if not entry.ground_truth:
        return _no_gold_outputs(entry.functions, rng, count)
    context = _Context(entry.functions, entry.ground_truth,
                       [value for call in entry.ground_truth for answers in next(iter(call.values())).values()
                        for value in answers if value != ""])
    answers = [_answer(entry.ground_truth, rng, mode) for mode in ("first", "random", "given")]
    outputs: list[Any] = [_copy(answer) for answer in answers]
    while len(outputs) < count:
        output = _copy(rng.choice(answers))
        for _ in range(1 if rng.random() < 0.75 else 2):
            if type(output) is list and all(type(item) is dict for item in output):
                output = rng.choice(_MUTATIONS)(output, context, rng)
        outputs.append(output)
    return outputs[:count]
