"""The world's vocabulary: parameter and function specs and value pools. The functions
themselves, and the lookups over them, are in :mod:`toolduel.world.functions`.

A spec carries its own phrasings: a function has plain intents ("Get the weather forecast")
and paraphrase intents ("What will the weather do"), a parameter has plain phrases
("for {v} days") and paraphrase phrases ("over the next {v} days"). The generator composes a
query from them, so each of the world's functions needs only a few lines.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from toolduel.schema import Tool

WORLD_VERSION = "1"  # bump when functions, pools or phrasings change: it keys the model cache

_JSON_TYPES = ("string", "integer", "number", "boolean", "array")


def _alternatives(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split("|") if t.strip())


@dataclass(frozen=True)
class Param:
    """One parameter: its JSON type, the pool its values come from and how a query says it."""

    name: str
    type: str
    pool: str
    phrases: tuple[str, ...]  # plain, each with one "{v}"
    alt_phrases: tuple[str, ...] = ()  # paraphrase
    required: bool = True
    default: Any = None
    enum: tuple | None = None
    description: str = ""

    def schema(self) -> dict:
        spec: dict[str, Any] = {"type": self.type}
        if self.type == "array":
            spec["items"] = {"type": POOL_ITEM_TYPES.get(self.pool, "string")}
        if self.enum:
            spec["enum"] = list(self.enum)
        if self.description:
            spec["description"] = self.description
        if not self.required and self.default is not None:
            spec["default"] = self.default
        return spec


@dataclass(frozen=True)
class Function:
    name: str
    domain: str
    description: str
    params: tuple[Param, ...]
    intents: tuple[str, ...]
    alt_intents: tuple[str, ...]

    def tool(self) -> Tool:
        return Tool(name=self.name, description=self.description, parameters={
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
        })

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def req(name: str, type_: str, pool: str, phrases: str, alt: str = "", *, desc: str = "",
        enum: tuple | None = None) -> Param:
    """A required parameter; ``phrases`` and ``alt`` hold "|"-separated alternatives."""
    _check_type(name, type_)
    return Param(name, type_, pool, _alternatives(phrases), _alternatives(alt) or _alternatives(phrases),
                 True, None, enum or POOL_ENUMS.get(pool), desc)


def opt(name: str, type_: str, pool: str, phrases: str, default: Any = None, alt: str = "", *,
        desc: str = "", enum: tuple | None = None) -> Param:
    """An optional parameter with its default (``None``: no declared default)."""
    _check_type(name, type_)
    return Param(name, type_, pool, _alternatives(phrases), _alternatives(alt) or _alternatives(phrases),
                 False, default, enum or POOL_ENUMS.get(pool), desc)


def fn(name: str, domain: str, description: str, intents: str, alt_intents: str, *params: Param) -> Function:
    return Function(name, domain, description, tuple(params), _alternatives(intents), _alternatives(alt_intents))


def _check_type(name: str, type_: str) -> None:
    if type_ not in _JSON_TYPES:
        raise ValueError(f"parameter {name!r}: type {type_!r} is not one of {_JSON_TYPES}")


# ----------------------------------------------------------------------------- value pools

POOL_ENUMS: dict[str, tuple] = {
    "length_unit": ("km", "mi", "m", "ft", "cm"),
    "weight_unit": ("kg", "lb", "g", "oz"),
    "volume_unit": ("l", "ml", "gal", "cup"),
    "temp_unit": ("celsius", "fahrenheit"),
    "temp_scale": ("celsius", "fahrenheit", "kelvin"),
    "currency": ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "INR", "AUD", "MXN"),
    "cabin": ("economy", "premium", "business", "first"),
    "sort_order": ("relevance", "price", "rating", "newest"),
    "priority": ("low", "normal", "high"),
    "cuisine": ("italian", "thai", "mexican", "indian", "japanese", "french", "vegan"),
    "attraction": ("museum", "park", "landmark", "market", "beach"),
    "car_class": ("compact", "sedan", "suv", "van"),
    "language": ("French", "German", "Spanish", "Italian", "Japanese", "Portuguese"),
    "room": ("kitchen", "bedroom", "living room", "bathroom", "office", "garage"),
    "door": ("front door", "back door", "garage door", "side gate"),
    "genre": ("jazz", "rock", "classical", "pop", "hip hop", "folk"),
    "price_level": ("cheap", "moderate", "expensive"),
}

POOLS: dict[str, tuple] = {
    "city": ("Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Lisbon", "Oslo", "Cairo", "Sydney",
             "Toronto", "Chicago", "Boston", "Seattle", "Denver", "Austin", "Miami", "Dublin", "Vienna",
             "Prague", "Athens", "Nairobi", "Lima", "Seoul", "Mumbai", "Bangkok", "New York", "Los Angeles",
             "San Francisco", "Rio de Janeiro", "Mexico City", "Buenos Aires", "Cape Town", "Amsterdam",
             "Zurich", "Istanbul", "Hanoi", "Helsinki", "Warsaw", "Montreal"),
    "person": ("Alice", "Bob", "Carol", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
               "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera",
               "Wes", "Yuki", "Zoe", "Mom", "Dad", "my sister", "my boss", "the landlord"),
    "email": ("alice@example.com", "bob.lee@mail.net", "carol@work.org", "dev-team@corp.io",
              "support@shop.com", "hr@company.com", "maya.r@inbox.com", "noah@studio.dev"),
    "message": ("running late", "see you at the cafe", "call me when you land", "dinner is ready",
                "the meeting moved", "happy birthday", "thanks for the help", "please buy milk",
                "the package arrived", "on my way home", "good luck today", "lunch tomorrow?"),
    "subject": ("Project update", "Invoice", "Weekend plans", "Team lunch", "Quarterly report",
                "Travel itinerary", "Welcome aboard", "Schedule change"),
    "event_title": ("dentist appointment", "team standup", "yoga class", "parent meeting", "book club",
                    "coffee with Ana", "budget review", "flight to Rome", "piano lesson", "gym session"),
    "reminder": ("water the plants", "take out the trash", "pay rent", "call grandma", "renew passport",
                 "pick up laundry", "feed the cat", "submit the report"),
    "product": ("wireless headphones", "running shoes", "coffee grinder", "yoga mat", "desk lamp",
                "backpack", "phone charger", "water bottle", "rain jacket", "mechanical keyboard",
                "air fryer", "electric kettle", "sunglasses", "board game"),
    "coupon": ("SAVE10", "WELCOME5", "SPRING20", "FREESHIP", "VIP15"),
    "order_id": ("A1042", "B2297", "C3815", "D4460", "E5121", "F6703"),
    "flight": ("BA117", "AF22", "LH400", "UA901", "DL48", "JL5", "QF12", "EK203"),
    "stock": ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "IBM", "NFLX"),
    "song": ("Yesterday", "Clair de Lune", "Hotel California", "Imagine", "Bohemian Rhapsody",
             "Take Five", "Wonderwall", "Hallelujah", "Blue in Green", "Purple Rain"),
    "artist": ("The Beatles", "Miles Davis", "Adele", "Queen", "Nina Simone", "Radiohead",
               "Daft Punk", "Billie Holiday", "Coldplay", "Shakira"),
    "playlist": ("road trip", "morning run", "focus", "dinner party", "sleep", "throwbacks"),
    "dish": ("lasagna", "pad thai", "guacamole", "banana bread", "miso soup", "chili", "pancakes",
             "risotto", "falafel", "tomato soup"),
    "restaurant": ("Luigi's", "Golden Dragon", "Taco Loco", "Spice Route", "Le Petit Bistro",
                   "Sushi Zen"),
    "text": ("good morning", "where is the station", "thank you very much", "how much does it cost",
             "I would like a coffee", "the weather is nice today"),
    "word": ("serendipity", "ephemeral", "ubiquitous", "resilient", "meticulous", "candid"),
    "topic": ("technology", "sports", "science", "business", "health", "travel"),
}

POOL_ITEM_TYPES = {"numbers": "number", "people": "string", "songs": "string", "dishes": "string"}
_ARRAY_POOLS = {"numbers": None, "people": "person", "songs": "song", "dishes": "dish"}

# Integer pools: (low, high); number pools add halves and cents.
INT_RANGES: dict[str, tuple[int, int]] = {
    "small": (1, 12), "days": (1, 14), "guests": (1, 8), "quantity": (1, 24), "minutes": (5, 120),
    "percent": (5, 30), "decimals": (0, 4), "years": (1, 30), "rating": (1, 5), "level": (0, 100),
    "int": (2, 999), "limit": (1, 50), "temperature": (16, 28),
}
NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "amount": (5, 2000), "percent": (1, 90), "measure": (1, 500), "rate": (1, 12), "price": (10, 800), "value": (1, 999),
}


def sample_value(pool: str, type_: str, rng: random.Random) -> Any:
    """A value of ``type_`` drawn from ``pool``."""
    if type_ == "array":
        item_pool = _ARRAY_POOLS[pool]
        size = rng.randint(2, 3)
        if item_pool is None:
            return [sample_value("value", "number", rng) for _ in range(size)]
        return rng.sample(list(POOLS[item_pool]), size)
    if type_ == "boolean":
        return True  # a boolean is only stated when it differs from its default (False)
    if pool in POOL_ENUMS:
        return rng.choice(POOL_ENUMS[pool])
    if pool == "date":
        return (dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(730))).isoformat()
    if pool == "time":
        return f"{rng.randint(6, 21):02d}:{rng.choice((0, 0, 15, 30, 45)):02d}"
    if type_ == "integer":
        if pool == "small" and rng.random() < 0.35:
            return rng.choice((2, 6, 12))  # the idiomatic ones: a couple, half a dozen, a dozen
        low, high = INT_RANGES[pool]
        return rng.randint(low, high)
    if type_ == "number":
        low, high = NUMBER_RANGES[pool]
        whole = rng.randint(low, high)
        return rng.choice((float(whole), whole + 0.5, round(whole + rng.randint(1, 99) / 100, 2)))
    return rng.choice(POOLS[pool])
