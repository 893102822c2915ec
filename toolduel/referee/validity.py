"""Is a generated query still asking for the gold calls? The cheap rule check of the game.

Without this gate the query model wins by dropping or changing information, which is not a
weakness of the FC model but a broken question. :func:`check_query` checks that

- every gold value that must be given is grounded in the query: written as is (case and
  spacing aside), as the same number ("12", "12.0", "1,000"; not "012"), or as one of its
  surface forms ("a dozen" and "twelve" for 12, "kilometers" for km, "May 12th, 2025" for
  2025-05-12), which the :class:`Lexicon` given knows;
- the query names each gold function's intent, when the lexicon knows its words: for a
  function of the embedded world, at least one of the words that its phrasings use and few
  other functions do ("vacuum",
  "forecast", "times"), typos forgiven; without it, a grounded query for another function
  ("Turn on the lights in the bedroom" for the vacuum's "bedroom") would pass;
- every value that could swap with another parameter's is said in its own role ("Convert 12.5
  mi to km" asks for mi -> km, whatever values it shares with the gold km -> mi): see
  :mod:`toolduel.referee.roles`;
- the query is not held-out text (the lexicon says which texts an evaluation holds out), so no
  pool or replay ever trains on an evaluation's queries;
- no function name or call syntax leaks into the query;
- the query's length is within bounds, and it is at most ``MAX_GROWTH`` characters longer than
  the seed it rewrites: the world's own rewrites of a request add at most 110 (a chatty
  wrapping, distracting numbers), while a query model rewarded for failures learns run-ons
  that ask for the gold calls and then for more ("get the UV index in Sydney, get unread
  messages, ...");
- no phrase of three words is said more often than in the seed or than there are gold calls
  ("Round off 1231, round off 1231." asks for the rounding twice); phrases of short words
  only ("km per hour") are exempt, as units repeat in plain requests.

Booleans have no surface form, so they are not checked; a judge model can. For an argument
with several acceptable values (BFCL's possible answers), any one grounded is enough; an
argument that may be left out is not checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolduel.referee.roles import RoleCues, inside_a_number, named_pairs, role_swaps
from toolduel.referee.tool_list import described_purpose
from toolduel.schema import OPTIONAL, Sample, Tool

MIN_CHARS = 4
MAX_CHARS = 600
MAX_GROWTH = 120
_CALL_SYNTAX = (
    re.compile(r"</?tool_call>"),
    re.compile(r'"(?:name|arguments|parameters)"\s*:'),
    re.compile(r"\b[A-Za-z_][\w.]*\(\s*\w+\s*="),  # f(a=..., python-style call
    re.compile(r"\[\s*[A-Za-z_][\w.]*\("),  # [f( BFCL-style list of calls
)
# A number as people write one: no leading zero ("0488.5" is not 488.5), thousands grouped by three.
_NUMBER = re.compile(r"(?<![\w.])-?(?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*|0)(?:\.\d+)?(?!\w)")


@dataclass
class ValidityVerdict:
    """``reasons`` holds one ``"type: detail"`` entry per failed rule (empty when valid)."""

    valid: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def error_type(self) -> str | None:
        """The first failed rule's type (``ungrounded``, ``role_swapped``, ``off_intent``, ``repeated``,
        ``leak``, ``heldout``, ``length``, ``empty``)."""
        return self.reasons[0].split(":", 1)[0] if self.reasons else None


def normalize(text: str) -> str:
    """Lower case, compatibility forms folded, separators and most punctuation as spaces.

    Keeps what numbers, e-mail addresses, money and times are made of (``. , : @ $ € £ ¥ ° '``)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"[^\w@$€£¥°.,:'+]+", " ", text)
    text = re.sub(r"_", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _form_pattern(form: str) -> str | None:
    """A regex for ``form`` in normalized text, or None for a form that normalizes to nothing."""
    needle = normalize(form)
    if not needle:
        return None
    # No letter or digit may touch a word-like end of the match, nor a decimal part: "12" is
    # not in "12.5"; a symbol end ("$", "°c") may touch the number it belongs to.
    before = r"(?<![\w.])" if needle[0].isalnum() else ""
    after = r"(?!\w|[.,]\d)" if needle[-1].isdigit() else ""
    if needle[-1].isalpha():
        after = r"(?:e?s)?(?!\w)"  # a plural still names the thing: "yoga mats" for "yoga mat"
    return before + re.escape(needle) + after


def _contains(normalized_query: str, form: str) -> bool:
    pattern = _form_pattern(form)
    return pattern is not None and re.search(pattern, normalized_query) is not None


def _numbers_in(query: str) -> set[float]:
    return {float(match.replace(",", "")) for match in _NUMBER.findall(unicodedata.normalize("NFKC", query))}


def _places(normalized_query: str, value: Any, forms: Callable[[Any], Sequence[str]]) -> list[tuple[int, int]]:
    """The spans of ``normalized_query`` that say ``value``: as a number, as written, or in a form."""
    spans = []
    if isinstance(value, (int, float)):
        spans += [m.span() for m in _NUMBER.finditer(normalized_query)
                  if float(m.group().replace(",", "")) == float(value)]
    for form in dict.fromkeys([str(value), *forms(value)]):
        pattern = _form_pattern(form)
        if pattern is not None:
            spans += [m.span() for m in re.finditer(pattern, normalized_query)]
    return spans


def no_forms(value: Any) -> Sequence[str]:
    return ()


def no_intent_words(name: str) -> Collection[str] | None:
    return None


def nothing_held_out(query: str, sample: Sample) -> bool:
    return False


@dataclass(frozen=True)
class ExtraForms:
    """``base``'s forms of a value, then those ``extra`` lists under ``str(value)`` (picklable)."""

    base: Callable[[Any], Sequence[str]]
    extra: Mapping[str, Sequence[str]]

    def __call__(self, value: Any) -> list[str]:
        return [*self.base(value), *self.extra.get(str(value), ())]


@dataclass(frozen=True)
class Lexicon:
    """What the rule check knows of the tools' language: the ways a value may be said
    (``surface_forms(value)``: "a dozen" for 12, "kilometers" for km), the words that name
    a function's intent (``intent_words(name)``, None: not checked), the parameters of a tool
    that could swap and the words that say each one's role (``role_cues(tool)``; the default
    knows pairs named as one, such as ``from_unit`` / ``to_unit``), which query texts an
    evaluation holds out (``held_out(query, seed)``), and what a tool is for (``purpose(tool)``,
    read by :mod:`toolduel.referee.tool_list`: two tools with one purpose can serve one request;
    the default reads its description). The default knows no forms, no intent
    words and no held-out text, so a value must be written as it is and intent goes unchecked;
    the programs pass the embedded world's (:func:`toolduel.world.lexicon.world_lexicon`)."""

    surface_forms: Callable[[Any], Sequence[str]] = no_forms
    intent_words: Callable[[str], Collection[str] | None] = no_intent_words
    role_cues: Callable[[Tool], Mapping[str, RoleCues]] = named_pairs
    held_out: Callable[[str, Sample], bool] = nothing_held_out
    purpose: Callable[[Tool], str] = described_purpose
    purpose: Callable[[Tool], str] = described_purpose

    def with_forms(self, extra: Mapping[str, Sequence[str]]) -> "Lexicon":
        """This lexicon, with more forms for some values (keyed by ``str(value)``)."""
        return dataclasses.replace(self, surface_forms=ExtraForms(self.surface_forms, extra))


def is_grounded(value: Any, query: str, forms: Callable[[Any], Sequence[str]] = no_forms) -> bool:
    """Whether ``query`` states ``value`` (every element, for a list; always, for a boolean),
    as it is or in one of its ``forms``."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(is_grounded(v, query, forms) for v in value)
    if isinstance(value, dict):
        return all(is_grounded(v, query, forms) for v in value.values())
    if isinstance(value, (int, float)) and float(value) in _numbers_in(query):
        return True
    normalized_query = normalize(query)
    if isinstance(value, (int, float)):  # a number said inside a longer one is not said: 5 in "twenty-five"
        return any(not inside_a_number(normalized_query, start, end)
                   for start, end in _places(normalized_query, value, forms))
    return any(_contains(normalized_query, form) for form in [str(value), *forms(value)])


def names_intent(query: str, words: Collection[str]) -> bool:
    """Whether ``query`` says one of ``words``, as a word, a plural, or with a typo (one
    dropped, doubled or swapped letter) in a word of four letters or more."""
    said = set(re.findall(r"[a-z]+", normalize(query)))
    for word in words:
        if word in said or word + "s" in said:
            return True
        if len(word) >= 4 and any(abs(len(s) - len(word)) <= 1 and
                                  difflib.SequenceMatcher(None, word, s).ratio() >= 0.75 for s in said):
            return True
    return False


def _phrases(text: str) -> Counter:
    """Every run of three words that carries a number or a word of five letters or more."""
    words = re.findall(r"[a-z0-9]+", normalize(text))
    runs = (tuple(words[i:i + 3]) for i in range(len(words) - 2))
    return Counter(run for run in runs if any(len(w) >= 5 or w.isdigit() for w in run))


def _repeats(query: str, sample: Sample) -> list[str]:
    """The first phrase said more often than the seed says it or than there are gold calls."""
    in_seed, calls = _phrases(sample.query), max(len(sample.gold), 1)
    for run, count in _phrases(query).items():
        allowed = max(in_seed[run], calls)
        if count > allowed:
            return [f"repeated: {' '.join(run)!r} {count} times (the seed asks for it at most {allowed})"]
    return []


def _leaks(query: str, sample: Sample) -> list[str]:
    reasons = []
    lowered = query.lower()
    for tool in sample.tools:
        name = tool.name
        looks_like_identifier = any(c in name for c in "_.") or re.search(r"[a-z][A-Z]", name)
        if looks_like_identifier and re.search(r"(?<!\w)" + re.escape(name.lower()) + r"(?!\w)", lowered):
            reasons.append(f"leak: function name {name!r}")
    for pattern in _CALL_SYNTAX:
        match = pattern.search(query)
        if match:
            reasons.append(f"leak: call syntax {match.group(0)!r}")
            break
    return reasons


def check_query(query: str, sample: Sample, lexicon: Lexicon | None = None, min_chars: int = MIN_CHARS,
                max_chars: int = MAX_CHARS, max_growth: int | None = MAX_GROWTH) -> ValidityVerdict:
    """Whether ``query`` still asks for ``sample``'s gold calls (see the module docstring).

    ``lexicon``: how values may be said and which words name a function (:class:`Lexicon`;
    default: values as written, intent unchecked).
    ``max_growth``: how many characters the query may add to ``sample.query``, the seed it
    rewrites (None: unchecked)."""
    if not isinstance(query, str) or not query.strip():
        return ValidityVerdict(False, ["empty: no query text"])
    reasons = []
    length = len(query.strip())
    if length < min_chars:
        reasons.append(f"length: {length} characters, fewer than {min_chars}")
    if length > max_chars:
        reasons.append(f"length: {length} characters, more than {max_chars}")
        query = query[: max_chars * 4]  # bounds the work on hostile input; still invalid
    elif max_growth is not None and sample.query and length > len(sample.query.strip()) + max_growth:
        reasons.append(f"length: {length} characters, {length - len(sample.query.strip())} more than the "
                       f"seed's (at most {max_growth} more)")
    lexicon = lexicon or Lexicon()
    if lexicon.held_out(query, sample):
        reasons.append("heldout: the query is held-out text of an evaluation set (never trained on)")
    reasons.extend(_leaks(query, sample))
    reasons.extend(_repeats(query, sample))
    for name in dict.fromkeys(gold.name for gold in sample.gold):
        words = lexicon.intent_words(name)
        if words and not names_intent(query, words):
            reasons.append(f"off_intent: nothing names {name} ({', '.join(sorted(words)[:5])}, ...)")
    for gold in sample.gold:
        for param, answers in gold.arguments.items():
            if not answers or OPTIONAL in answers:
                continue
            if not any(is_grounded(answer, query, lexicon.surface_forms) for answer in answers):
                reasons.append(f"ungrounded: {gold.name}.{param}={answers[0]!r}")
    said = normalize(query.replace("%", " percent "))  # "20%" says "20 percent": its role word stays
    reasons.extend(role_swaps(said, sample, lexicon.role_cues,
                              lambda value: _places(said, value, lexicon.surface_forms)))
    return ValidityVerdict(not reasons, reasons)
