"""Simple measured traits of a query, and how they differ between valid queries that fooled the FC model and not.

Pure functions over plain data: a query string and a sample dict (``Sample.to_dict()``: its
``tools`` and its ``gold`` calls ``{name: {arg: [acceptable values]}}``).
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any, Iterable

OPTIONAL = ""  # BFCL's "may be left out" marker in a list of acceptable values

TRAITS = {  # name -> what it measures (shown in the report)
    "words": "length of the query in words",
    "tools": "number of tools offered",
    "other_numbers": "numbers in the query that are no argument value",
    "indirect_values": "argument values not written literally",
    "values_out_of_order": "values written in another order than the tool's arguments (0/1)",
}

_NUMBER = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def _numbers(text: str) -> list[tuple[float, int]]:
    """(value, position) of every number written in digits: "1,000" is 1000, "2025-09-25" is three."""
    return [(float(m.group(0).replace(",", "")), m.start()) for m in _NUMBER.finditer(text)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(value: Any) -> list[Any]:
    """The scalars in a value (list elements, dict values), booleans and None aside: no surface form."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return [] if isinstance(value, bool) or value is None else [value]


def _position(leaf: Any, lowered_query: str, numbers: list[tuple[float, int]]) -> int | None:
    """Where the query writes ``leaf`` literally (case and spacing aside), or None."""
    if _is_number(leaf):
        return next((at for number, at in numbers if number == float(leaf)), None)
    needle = re.sub(r"\s+", " ", str(leaf).strip().lower())
    if not needle:
        return None
    match = re.search(r"(?<!\w)" + re.escape(needle).replace(r"\ ", r"\s+") + r"(?!\w)", lowered_query)
    return match.start() if match else None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _gold_arguments(sample: dict) -> list[tuple[str, list[tuple[str, list]]]]:
    """[(function, [(argument, acceptable values)])] in the tool's argument order, arguments that
    may be left out aside (a query need not state them)."""
    orders = {}
    for tool in _list(sample.get("tools")):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        parameters = function.get("parameters") if isinstance(function, dict) else None
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(properties, dict):
            orders[str(function.get("name"))] = list(properties)
    calls = []
    for gold in _list(sample.get("gold")):
        if not isinstance(gold, dict) or len(gold) != 1:
            continue
        (name, arguments), = gold.items()
        if not isinstance(arguments, dict):
            continue
        order = orders.get(name, [])
        ranked = sorted(arguments, key=lambda a: order.index(a) if a in order else len(order))
        calls.append((name, [(a, arguments[a]) for a in ranked
                             if isinstance(arguments[a], list) and arguments[a] and OPTIONAL not in arguments[a]]))
    return calls


def query_traits(query: str, sample: dict) -> dict[str, float]:
    """The measured traits of ``query`` (see ``TRAITS``), given the sample it should ask for."""
    lowered, numbers = query.lower(), _numbers(query)
    value_numbers = set()  # every number a gold value holds, also inside strings ("2025-09-25")
    indirect, out_of_order = 0, False
    for _, arguments in _gold_arguments(sample):
        positions = []
        for _, answers in arguments:
            for leaf in _leaves(answers):
                value_numbers |= {float(leaf)} if _is_number(leaf) else {n for n, _ in _numbers(str(leaf))}
            # literal: some acceptable answer has all its parts written as they are
            found = [[_position(leaf, lowered, numbers) for leaf in _leaves(answer)] for answer in answers]
            literal = next((spots for spots in found if spots and None not in spots), None)
            if literal is None:
                indirect += any(_leaves(answer) for answer in answers)
            else:
                positions.append(min(literal))
        out_of_order |= positions != sorted(positions)
    return {
        "words": float(len(query.split())),
        "tools": float(len(_list(sample.get("tools")))),
        "other_numbers": float(sum(number not in value_numbers for number, _ in numbers)),
        "indirect_values": float(indirect),
        "values_out_of_order": float(out_of_order),
    }


def _effect(worked: list[float], failed: list[float]) -> float | None:
    """Difference of means over the pooled standard deviation: comparable across traits."""
    if len(worked) < 2 or len(failed) < 2:
        return None
    pooled = ((len(worked) - 1) * statistics.variance(worked) + (len(failed) - 1) * statistics.variance(failed)) \
        / (len(worked) + len(failed) - 2)
    if pooled == 0:
        return None
    return (statistics.fmean(worked) - statistics.fmean(failed)) / math.sqrt(pooled)


def compare_traits(records: Iterable[dict]) -> dict[str, dict]:
    """Per trait: ``worked`` and ``failed`` (mean over valid queries that did and did not make the
    FC model fail), their ``difference``, the standardised ``effect`` (None where it is undefined) and
    the group sizes. ``records`` are pool records; one without a boolean ``attack_success`` or a
    ``sample`` is left out. Traits come sorted by the size of their effect, largest first."""
    groups: dict[bool, list[dict]] = {True: [], False: []}
    for record in records:
        if isinstance(record.get("attack_success"), bool) and isinstance(record.get("sample"), dict):
            groups[record["attack_success"]].append(query_traits(str(record.get("query", "")), record["sample"]))
    table = {}
    for trait in TRAITS:
        worked = [t[trait] for t in groups[True]]
        failed = [t[trait] for t in groups[False]]
        mean_worked = statistics.fmean(worked) if worked else None
        mean_failed = statistics.fmean(failed) if failed else None
        table[trait] = {
            "worked": mean_worked, "failed": mean_failed,
            "difference": None if mean_worked is None or mean_failed is None else mean_worked - mean_failed,
            "effect": _effect(worked, failed), "n_worked": len(worked), "n_failed": len(failed)}
    return dict(sorted(table.items(), key=lambda item: -abs(item[1]["effect"] or 0.0)))
