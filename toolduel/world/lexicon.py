"""The world's lexicon for the referee's rule check: how its values may be said, and the
words that name each of its functions (:class:`toolduel.referee.validity.Lexicon`).

Its surface forms are general English (numbers in words, units, currencies, dates), so the
programs use it for every seed set; its intent words know only the world's functions, and
leave the intent of any other function unchecked.
"""

from __future__ import annotations

from toolduel.referee.validity import Lexicon
from toolduel.world.functions import intent_words
from toolduel.world.surface import surface_forms


def world_lexicon() -> Lexicon:
    return Lexicon(surface_forms=surface_forms, intent_words=intent_words)
