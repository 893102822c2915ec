"""The world's lexicon for the referee's rule check: how its values may be said, the words that
name each of its functions, the words that say which of a function's look-alike parameters a
value fills, and which query texts its held-out sets hold
(:class:`toolduel.referee.validity.Lexicon`).

Its surface forms are general English (numbers in words, units, currencies, dates), so the
programs use it for every seed set; its intent words and role words know only the world's
functions (any other tool keeps the referee's pairs named as one), and only a world seed's
rewrite can be held-out world text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

from toolduel.referee.roles import RoleCues, named_pairs
from toolduel.referee.tool_list import described_purpose
from toolduel.referee.validity import Lexicon
from toolduel.schema import Sample, Tool
from toolduel.world.catalog import INT_RANGES, NUMBER_RANGES, Function, Param
from toolduel.world.functions import all_functions, functions_by_name, intent_words
from toolduel.world.generator import split_of
from toolduel.world.surface import surface_forms

# Nouns that say what a number counts, beyond the ones the world's own phrases use.
_COUNT_NOUNS = {"guests": ("people", "persons", "adults", "travelers", "travellers"),
                "passengers": ("people", "travelers", "travellers"), "percent": ("per cent", "pct"),
                "dollars": ("usd", "bucks"), "years": ("yr", "yrs"), "people": ("persons", "guests", "diners")}


def _values(param: Param) -> tuple[float, float] | None:
    if param.type not in ("integer", "number"):
        return None
    return INT_RANGES.get(param.pool) if param.type == "integer" else NUMBER_RANGES.get(param.pool)


def _could_swap(one: Param, other: Param) -> bool:
    """Two parameters whose values a query could exchange: numbers whose ranges overlap, or
    values drawn from the same pool."""
    a, b = _values(one), _values(other)
    if a is not None and b is not None:
        return a[0] <= b[1] and b[0] <= a[1]
    return one.pool == other.pool and one.type == other.type and one.type != "array"


def _phrase_cues(param: Param) -> RoleCues:
    """The words the world's phrases say around ``param``'s value: every ending of the words
    before it ("of", "bill of", "a bill of") and every beginning of those after it ("dollars")."""
    before, after = set(), set()
    for phrase in (*param.phrases, *param.alt_phrases):
        if "{v}" not in phrase:
            continue
        left, right = (re.findall(r"[a-z]+", side.replace("%", " percent ").lower()) for side in phrase.split("{v}"))
        before |= {" ".join(left[i:]) for i in range(len(left))}
        after |= {" ".join(right[:i + 1]) for i in range(len(right))}
    after |= {noun for word in list(after) for noun in _COUNT_NOUNS.get(word, ())}
    return RoleCues(before=tuple(sorted(before)), after=tuple(sorted(after)))


@lru_cache(maxsize=None)
def _groups(function: Function) -> dict[str, RoleCues]:
    """Cues of ``function``'s parameters that could swap with another of its parameters."""
    named = named_pairs(function.tool())
    cues = dict(named)
    for param in function.params:
        if param.name not in named and any(_could_swap(param, other) for other in function.params
                                           if other is not param and other.name not in named):
            cues[param.name] = _phrase_cues(param)
    return cues


def role_cues(tool: Tool) -> Mapping[str, RoleCues]:
    """The world function's look-alike parameters with their role words, read from its phrases
    (pairs named as one take the referee's general words); another tool's named pairs."""
    function = functions_by_name().get(tool.name)
    if function is None or set(tool.properties) != {p.name for p in function.params}:
        return named_pairs(tool)
    return _groups(function)


@lru_cache(maxsize=1)
def _purposes_by_text() -> dict[str, str]:
    """Each text that says one world function's purpose (its description, an intent, a
    paraphrase intent; normalised as :func:`described_purpose` does) -> that function."""
    seen: dict[str, set[str]] = {}
    for function in all_functions():
        for text in (function.description, *function.intents, *function.alt_intents):
            seen.setdefault(described_purpose(Tool(name=function.name, description=text)), set()).add(function.name)
    return {text: names.pop() for text, names in seen.items() if len(names) == 1}


def world_purpose(tool: Tool) -> str:
    """The world function a tool is, by its name or, renamed, by its description (reworded to one
    of the function's intents included); another tool's described purpose."""
    if tool.name in functions_by_name():
        return tool.name
    text = described_purpose(tool)
    return _purposes_by_text().get(text, text)


def world_held_out(query: str, seed: Sample) -> bool:
    """A rewrite of a world seed whose text falls in the world's held-out split."""
    return seed.meta.get("source") == "world" and split_of(query) == "heldout"


def world_lexicon() -> Lexicon:
    return Lexicon(surface_forms=surface_forms, intent_words=intent_words, role_cues=role_cues,
                   held_out=world_held_out, purpose=world_purpose)


def swappable_functions() -> dict[str, list[str]]:
    """Every world function with parameters that could swap, and those parameters."""
    return {f.name: sorted(_groups(f)) for f in all_functions() if len(_groups(f)) >= 2}
