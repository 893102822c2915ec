"""How a query is phrased: the plain form, the perturbation kinds and their combinations.

A query is built as a list of :class:`Piece`s; a piece that states a gold value is marked,
so perturbations that touch words (typos, casing, dropped function words) never change a
value, and the query keeps asking for exactly the gold calls.

A phrasing is ``plain``, one perturbation kind, or two or three kinds composed into one
rewrite, named by joining them with ``+`` in :data:`PERTURBATIONS` order
(``reordered+distractor_numbers+terse``): :data:`COMBINATIONS` lists them all.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

PLAIN = "plain"
PERTURBATIONS = (
    "paraphrase",         # synonyms of the intent and of the argument phrases
    "indirect_values",    # "a dozen", "twelve", "kilometers", "May 12th, 2025"
    "reordered",          # arguments shuffled, one fronted before the intent
    "distractor_numbers", # irrelevant numbers around the request
    "chatty",             # polite or chatty wrapping
    "noisy",              # casing and typos
    "terse",              # keyword style, function words dropped
)
PHRASINGS = (PLAIN, *PERTURBATIONS)
# Perturbations that wrap or edit a finished query (the others change how it is composed), in
# the order a combination applies them: text is added before words are dropped or misspelt.
WRAPPERS = ("distractor_numbers", "chatty", "terse", "noisy")
# Kinds that do not compose: a polite wrapping in keyword style is no style at all; a chatty
# wrapping around distractor numbers grows a query past the validity gate's bound; arguments
# reordered around a paraphrased intent can read as the other role ("110.5, how long is
# expressed in cm in m" for 110.5 m in cm).
_CLASHES = ({"chatty", "terse"}, {"distractor_numbers", "chatty"}, {"paraphrase", "reordered"})
MAX_COMPOSED = 3


def combine(kinds: list[str] | tuple[str, ...]) -> str:
    """The name of the phrasing that composes ``kinds`` (order-free)."""
    return "+".join(sorted(set(kinds), key=PERTURBATIONS.index))


def kinds_of(phrasing: str) -> tuple[str, ...]:
    """The perturbation kinds a phrasing composes (``()`` for plain); a ValueError names a
    phrasing that is none of :data:`PHRASINGS` or :data:`COMBINATIONS`."""
    if phrasing == PLAIN:
        return ()
    kinds = tuple(phrasing.split("+"))
    clashes = ", ".join("+".join(sorted(c, key=PERTURBATIONS.index)) for c in _CLASHES)
    if (any(k not in PERTURBATIONS for k in kinds) or combine(kinds) != phrasing or len(kinds) > MAX_COMPOSED
            or any(clash <= set(kinds) for clash in _CLASHES)):
        raise ValueError(f"unknown phrasing {phrasing!r}: use plain, one of {', '.join(PERTURBATIONS)}, or two or "
                         f"three of them joined by '+' in that order, no two of them clashing ({clashes})")
    return kinds


COMBINATIONS: tuple[str, ...] = tuple(
    combine(kinds) for size in range(2, MAX_COMPOSED + 1) for kinds in itertools.combinations(PERTURBATIONS, size)
    if not any(clash <= set(kinds) for clash in _CLASHES))


@dataclass
class Piece:
    text: str
    value: bool = False  # states a gold value: left alone by word-level perturbations


def join(pieces: list[Piece]) -> str:
    text = " ".join(p.text for p in pieces if p.text)
    text = re.sub(r"\s+([,.?!;:])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def capitalize(pieces: list[Piece]) -> list[Piece]:
    for piece in pieces:
        if piece.text:
            if not piece.value:
                piece.text = piece.text[0].upper() + piece.text[1:]
            break
    return pieces


def decapitalize(pieces: list[Piece]) -> list[Piece]:
    for piece in pieces:
        if piece.text:
            if not piece.value and not piece.text[:2].isupper():
                piece.text = piece.text[0].lower() + piece.text[1:]
            break
    return pieces


# ----------------------------------------------------------------------------- wrappers

_CHATTY_OPEN = (
    "Hi there! I hope your day is going well. Could you please",
    "Hey, quick favor:", "Good morning! If it's not too much trouble,", "Sorry to bother you, but",
    "Hello assistant, I was wondering if you could", "Okay so, long story short,",
    "Hey friend! When you get a chance,", "I know you're busy, but please",
)
_CHATTY_CLOSE = ("Thanks so much!", "I really appreciate it.", "Cheers!", "Thank you kindly!",
                 "You're the best.", "No rush, thanks!", "")

_DISTRACTORS = (
    "I have {n} kids and a busy week, so", "My apartment is number {n}, anyway", "After {n} meetings today,",
    "I already asked {n} times,", "It has been {n} days since my last vacation, so",
    "My phone is at {n} percent battery, so quickly:", "Order {n} went fine last week; now",
    "I slept {n} hours last night, so bear with me:",
)
_DISTRACTOR_TAILS = ("(I tried {n} other apps already)", "- my cousin says {n} is a lucky number.",
                     "(ticket {n} if that matters)")

_STOPWORDS = {"the", "a", "an", "for", "of", "in", "on", "at", "my", "with", "please", "me", "is",
              "it", "what", "how", "that", "i", "do", "some", "called", "named", "saying"}


def wrap_chatty(pieces: list[Piece], rng: random.Random) -> list[Piece]:
    opening = rng.choice(_CHATTY_OPEN)
    closing = rng.choice(_CHATTY_CLOSE)
    body = decapitalize(pieces)
    return [Piece(opening), *body, Piece(closing)]


def add_distractor_numbers(pieces: list[Piece], rng: random.Random, avoid: set[str]) -> list[Piece]:
    def number() -> str:
        while True:
            n = str(rng.randint(2, 99))
            if n not in avoid and not any(n in a for a in avoid):
                return n

    out = [Piece(rng.choice(_DISTRACTORS).format(n=number())), *decapitalize(pieces)]
    if rng.random() < 0.5:
        out.append(Piece(rng.choice(_DISTRACTOR_TAILS).format(n=number())))
    return out


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    edit = rng.choice(("swap", "drop", "double"))
    if edit == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if edit == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def add_noise(pieces: list[Piece], rng: random.Random) -> list[Piece]:
    """Typos in two or three non-value words and a casing change (all lower or shouted words)."""
    slots = [(i, j) for i, p in enumerate(pieces) if not p.value
             for j, w in enumerate(p.text.split(" ")) if len(w) >= 4 and w.isalpha()]
    chosen = set(rng.sample(slots, min(len(slots), rng.randint(2, 3))))
    casing = rng.choice(("lower", "lower", "upper_words", "none"))
    out = []
    for i, piece in enumerate(pieces):
        if piece.value:
            out.append(Piece(piece.text, True))
            continue
        words = piece.text.split(" ")
        for j, word in enumerate(words):
            if (i, j) in chosen:
                word = _typo(word, rng)
            if casing == "lower":
                word = word.lower()
            elif casing == "upper_words" and rng.random() < 0.3:
                word = word.upper()
            words[j] = word
        out.append(Piece(" ".join(words)))
    if rng.random() < 0.5 and out and out[-1].text.endswith((".", "?", "!")) and not out[-1].value:
        out[-1].text = out[-1].text[:-1]
    return out


def make_terse(pieces: list[Piece]) -> list[Piece]:
    """Keyword style: drop function words and punctuation outside the values, all lower case."""
    out = []
    for piece in pieces:
        if piece.value:
            out.append(Piece(piece.text, True))
            continue
        words = [w.strip(",.?!:;").lower() for w in piece.text.split(" ")]
        kept = [w for w in words if w and w not in _STOPWORDS]
        out.append(Piece(" ".join(kept)))
    return out
