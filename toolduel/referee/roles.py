"""Is each gold value said in the role of its parameter? The role half of the rule check.

Grounding (:func:`toolduel.referee.validity.is_grounded`) asks that every gold value is written
somewhere in the query, so "Convert 12.5 mi to km" passes for the gold call km -> mi: the FC
model answers the query correctly, is scored as fooled, and the pool teaches it the wrong call.

A function's parameters that could swap form a *group*: a pair named as one (``from_unit`` /
``to_unit``, ``start_date`` / ``end_date``, ``origin`` / ``destination``), or, where a lexicon
knows the function, parameters of one type whose values overlap (a hotel's nights and guests).
Each parameter of a group has :class:`RoleCues`: phrases said right before its value ("from",
"between", "leaving"; "to", "into", "and"; "# in", where ``#`` stands for a number: the unit of
"12.5 in km" is the one converted from; "@ in", where ``@`` stands for another value of the
group: the unit of "mi in km" is the one converted to) or right after it ("nights", "guests",
"percent").

Each place the query says a gold value is read for its cue: the longest phrase of the group
that ends right before it or, taking precedence, starts right after it (a noun binds a number
more tightly than a preposition: "for 3 nights"). A value is **swapped** when some place says
it in the role of another parameter of the group that does not take that value, and no place
says it in its own role. A value said with no cue is left alone: the rules cannot tell, and a
judge can.
"""

from __future__ import annotations

import itertools
import re
from difflib import SequenceMatcher
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolduel.schema import OPTIONAL, Sample, Tool

NUMBER_TOKEN, VALUE_TOKEN = "#", "@"
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand half "
    "dozen couple pair score".split())
_DETERMINERS = frozenset({"the", "a", "an", "my", "our", "some"})
_TRIM = ".,:;'"


@dataclass(frozen=True)
class RoleCues:
    """Phrases that, right ``before`` or right ``after`` a value, say that it fills this parameter."""

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


# --- pairs named as one, for any tool --------------------------------------------------------

# Source and target markers in a parameter's name, by the kind of pair they make.
_PAIR_MARKERS = {"conversion": ({"from", "source", "src", "input", "base"}, {"to", "target", "dest", "output"}),
                 "route": ({"origin", "departure", "from", "start"}, {"destination", "arrival", "to", "end"}),
                 "span": ({"start", "begin", "from", "since"}, {"end", "until", "to", "finish"})}
ROLE_MARKERS = frozenset().union(*(ends for pair in _PAIR_MARKERS.values() for ends in pair))
_ROUTE_STEMS = {"city", "location", "airport", "place", "station", "port", "address", "country"}
_SPAN_STEMS = {"date", "time", "day", "datetime", "year", "month", "hour"}
# General English: how a request says which end of the pair a value is.
PAIR_CUES = {
    "conversion": (RoleCues(before=("from", "out of", "# in", "in #", "of #")),
                   RoleCues(before=("to", "into", "@ in", "be in", "as", "expressed in", "in terms of", "how many",
                                    "converted to", "converted into"))),
    "route": (RoleCues(before=("from", "out of", "leaving", "departing", "departing from", "flying out of",
                               "starting in", "starting from")),
              RoleCues(before=("to", "into", "going to", "headed to", "heading to", "headed for", "bound for",
                               "arriving in", "arriving at", "landing in", "flying to"))),
    "span": (RoleCues(before=("from", "between", "since", "starting", "starting on", "starting from", "beginning",
                              "beginning on", "after")),
             RoleCues(before=("to", "until", "till", "through", "and", "ending", "ending on", "up to", "before"))),
}


def _readings(name: str) -> list[tuple[str, str]]:
    """Each word of a parameter's name as a marker, with the rest as its stem: ``from_unit`` reads
    as ("from", "unit") and ("unit", "from")."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)]
    return [(word, "_".join(words[:i] + words[i + 1:])) for i, word in enumerate(words)]


def _pair_kind(marker: str, stem: str) -> str:
    if marker in ("origin", "destination", "departure", "arrival") or stem in _ROUTE_STEMS:
        return "route"
    if marker in ("start", "begin", "end", "since", "until", "finish") or stem in _SPAN_STEMS:
        return "span"
    return "conversion"


def named_pairs(tool: Tool) -> dict[str, RoleCues]:
    """Cues of ``tool``'s parameters that are named as a pair (``from_unit`` / ``to_unit``,
    ``start_date`` / ``end_date``, ``origin`` / ``destination``), by :data:`PAIR_CUES`."""
    readings = {name: _readings(name) for name in tool.properties}
    cues: dict[str, RoleCues] = {}
    for (source, source_readings), (target, target_readings) in itertools.permutations(readings.items(), 2):
        for (source_marker, stem), (target_marker, target_stem) in itertools.product(source_readings,
                                                                                     target_readings):
            sources, targets = _PAIR_MARKERS[_pair_kind(source_marker, stem)]
            if stem == target_stem and source_marker in sources and target_marker in targets:
                cues[source], cues[target] = PAIR_CUES[_pair_kind(source_marker, stem)]
    return cues


# --- reading a query -------------------------------------------------------------------------


def _is_number(token: str) -> bool:
    return token in _NUMBER_WORDS or re.fullmatch(r"[$€£¥]?\d[\d,]*(\.\d+)?", token) is not None


def _same(cue: str, token: str, value_words: frozenset[str]) -> bool:
    """``token`` says ``cue``: the same word, a plural, or (a word of five letters or more) with a
    typo, as the noisy requests of the world write them ("pecrent"); a number for ``#``, a word of
    one of the group's values for ``@``."""
    if cue == NUMBER_TOKEN:
        return _is_number(token)
    if cue == VALUE_TOKEN:
        return token in value_words
    if token == cue or token == cue + "s" or cue == token + "s":
        return True
    return len(cue) >= 5 and abs(len(token) - len(cue)) <= 1 and SequenceMatcher(None, cue, token).ratio() >= 0.75


def _ends_with(tokens: Sequence[str], cue: Sequence[str], value_words: frozenset[str]) -> bool:
    return len(cue) <= len(tokens) and all(_same(c, t, value_words)
                                           for c, t in zip(cue, tokens[len(tokens) - len(cue):]))


def _starts_with(tokens: Sequence[str], cue: Sequence[str], value_words: frozenset[str]) -> bool:
    return len(cue) <= len(tokens) and all(_same(c, t, value_words) for c, t in zip(cue, tokens))


def _tokens(text: str) -> list[str]:
    return [token for token in (t.strip(_TRIM) for t in text.split()) if token]


def _longest(matches: dict[str, int]) -> set[str]:
    best = max(matches.values(), default=0)
    return {param for param, length in matches.items() if length == best and best}


def claims(before: list[str], after: list[str], group: Mapping[str, RoleCues],
           value_words: frozenset[str] = frozenset()) -> set[str]:
    """The parameters of ``group`` whose cue is said around a value (``before`` and ``after`` it,
    as tokens): the longest cue after it, else the longest before it (determiners skipped).
    ``value_words``: the last word of every form of the group's values (what ``@`` matches)."""
    following = {param: max((len(c.split()) for c in cues.after if _starts_with(after, c.split(), value_words)),
                            default=0) for param, cues in group.items()}
    if _longest(following):
        return _longest(following)
    tails = [before]
    while tails[-1] and tails[-1][-1] in _DETERMINERS:
        tails.append(tails[-1][:-1])
    preceding = {param: max((len(c.split()) for tail in tails for c in cues.before
                             if _ends_with(tail, c.split(), value_words)), default=0) for param, cues in group.items()}
    return _longest(preceding)


def _stated_answers(answers: Sequence[Any]) -> list[Any]:
    """The single values an argument takes (one that may be left out still takes its default,
    and a query that says it in another role asks for another call)."""
    return [a for a in answers if a != OPTIONAL and isinstance(a, (str, int, float)) and not isinstance(a, bool)]


_FRACTIONS = (("and", "a", "half"), ("and", "a", "quarter"))
_SCALES = frozenset({"hundred", "thousand"})
_BREAKS = (",", ";", ":", ".")


def inside_a_number(normalized: str, start: int, end: int) -> bool:
    """Whether the number said at ``normalized[start:end]`` is part of a longer one said in words:
    "five" in "twenty-five", "one hundred" in "one hundred and twenty-two", "seventeen" in "three
    hundred seventeen and a half". It does not say its own value."""
    left, right = normalized[:start].rstrip(), normalized[end:].lstrip()
    before = [] if left.endswith(_BREAKS) else _tokens(left)  # a comma ends a number: "forty-two, one hundred"
    after = [] if right.startswith(_BREAKS) else _tokens(right)
    return _inside_a_number(before, _tokens(normalized[start:end]), after)


def _inside_a_number(before: list[str], said: list[str], after: list[str]) -> bool:
    if before and before[-1] in _NUMBER_WORDS or after and after[0] in _NUMBER_WORDS:
        return True
    if any(tuple(after[:3]) == fraction or (*before[-2:], *said[:1]) == fraction for fraction in _FRACTIONS):
        return True
    # "X hundred and Y" with Y under a hundred ("three hundred and five hundred" is two numbers)
    if said[-1:] and said[-1] in _SCALES and after[:1] == ["and"] and after[1:2] and after[1] in _NUMBER_WORDS:
        return after[2:3] == [] or after[2] not in _SCALES
    return len(before) >= 2 and before[-1] == "and" and before[-2] in _SCALES and said[0] in _NUMBER_WORDS


def role_swaps(normalized: str, sample: Sample, cues_of: Callable[[Tool], Mapping[str, RoleCues]],
               places: Callable[[Any], Iterable[tuple[int, int]]]) -> list[str]:
    """One ``role_swapped`` reason per gold value said only in another parameter's role.

    ``normalized``: the query as the rule check reads it; ``cues_of(tool)``: the parameters of
    the tool that could swap, with their cues; ``places(value)``: the spans of ``normalized``
    that say ``value`` (in any of its forms)."""
    tools = {tool.name: tool for tool in sample.tools}
    reasons = []
    for name in dict.fromkeys(gold.name for gold in sample.gold):
        group = cues_of(tools[name]) if name in tools else {}
        if len(group) < 2:
            continue
        calls = [gold for gold in sample.gold if gold.name == name]
        taken = {param: {_key(a) for call in calls for a in _stated_answers(call.arguments.get(param, []))}
                 for param in group}
        said = [normalized[start:end].split() for param in group for call in calls
                for answer in _stated_answers(call.arguments.get(param, [])) for start, end in places(answer)]
        value_words = frozenset(words[-1].strip(_TRIM) for words in said if words)
        for call in calls:
            for param in group:
                reason = _swap(normalized, param, _stated_answers(call.arguments.get(param, [])), group, taken, places,
                               value_words)
                if reason:
                    reasons.append(f"role_swapped: {name}.{param}={reason}")
    return list(dict.fromkeys(reasons))


def _key(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) else str(value).lower()


def _swap(normalized: str, param: str, answers: list[Any], group: Mapping[str, RoleCues], taken: dict[str, set],
          places: Callable[[Any], Iterable[tuple[int, int]]], value_words: frozenset[str]) -> str | None:
    """Why ``param``'s value is swapped, or None: said in its own role somewhere, or never cued
    as another parameter that does not take it."""
    contrary = None
    for answer in answers:
        for start, end in places(answer):
            if inside_a_number(normalized, start, end):
                continue
            before, after = _tokens(normalized[:start]), _tokens(normalized[end:])
            claimed = claims(before, after, group, value_words)
            if param in claimed:
                return None
            others = [other for other in claimed if _key(answer) not in taken[other]]
            if others and contrary is None:
                contrary = f"{answer!r} is said as {sorted(others)[0]} ({normalized[max(0, start - 24):end].strip()!r})"
    return contrary
