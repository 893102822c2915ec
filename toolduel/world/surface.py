"""Surface forms: the ways a query may state a value ("a dozen" and "twelve" for 12,
"kilometers" for km, "May 12th, 2024" for 2024-05-12).

The generator draws indirect phrasings from here and the validity check reads the same
table, so a value the world can say is a value the check can ground. The first form of
:func:`surface_forms` is always the canonical one (what a plain query writes).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# Idioms for whole numbers, beyond the spelled-out words.
NUMBER_IDIOMS: dict[int, tuple[str, ...]] = {
    2: ("a couple of", "a pair of"),
    6: ("half a dozen",),
    12: ("a dozen", "one dozen"),
    18: ("a dozen and a half",),
    20: ("a score of",),
    24: ("two dozen",),
    36: ("three dozen",),
    100: ("a hundred",),
    1000: ("a thousand", "1k"),
}

# Canonical value -> synonyms (units, currencies, temperature scales, city nicknames).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "km": ("kilometers", "kilometres"), "mi": ("miles",), "m": ("meters", "metres"),
    "ft": ("feet",), "cm": ("centimeters", "centimetres"),
    "kg": ("kilograms", "kilos"), "lb": ("pounds", "lbs"), "g": ("grams",), "oz": ("ounces",),
    "l": ("liters", "litres"), "ml": ("milliliters", "millilitres"), "gal": ("gallons",),
    "cup": ("cups",),
    "celsius": ("degrees C", "°C", "centigrade"), "fahrenheit": ("degrees F", "°F"),
    "kelvin": ("K",),
    "USD": ("US dollars", "dollars", "bucks", "$"), "EUR": ("euros", "€"),
    "GBP": ("British pounds", "pounds sterling", "£"), "JPY": ("Japanese yen", "yen", "¥"),
    "CHF": ("Swiss francs",), "CAD": ("Canadian dollars",), "INR": ("Indian rupees", "rupees"),
    "AUD": ("Australian dollars", "Aussie dollars"), "MXN": ("Mexican pesos", "pesos"),
    "New York": ("NYC", "the Big Apple"), "Los Angeles": ("LA",), "San Francisco": ("SF",),
    "Rio de Janeiro": ("Rio",), "Washington": ("DC",),
}


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 ("one hundred twenty-five")."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + number_words(rest) if rest else "")
    if n < 1_000_000:
        rest = n % 1000
        return number_words(n // 1000) + " thousand" + (" " + number_words(rest) if rest else "")
    return str(n)


def _number_forms(value: float) -> list[str]:
    if float(value).is_integer():
        n = int(value)
        forms = [str(n)]
        if abs(n) >= 1000:
            forms.append(f"{n:,}")
        if abs(n) < 1_000_000:
            words = number_words(n)
            forms.append(words)
            if " hundred " in words:  # "one hundred and twenty-five", as it is also said
                forms.append(words.replace(" hundred ", " hundred and ", 1))
        forms.extend(NUMBER_IDIOMS.get(n, ()))
        return forms
    text = f"{value:g}" if len(f"{value:g}") <= len(str(value)) else str(value)
    forms = [text]
    whole, frac = divmod(value, 1)
    if abs(frac - 0.5) < 1e-9:
        forms.append("half" if whole == 0 else f"{number_words(int(whole))} and a half")
    if len(text.split(".")[-1]) == 1:
        forms.append(f"{value:.2f}")  # 12.5 -> 12.50, as prices are written
    return forms


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date_forms(text: str) -> list[str]:
    day = dt.date.fromisoformat(text)
    month = day.strftime("%B")
    return [text, f"{month} {_ordinal(day.day)}, {day.year}", f"{month} {day.day}, {day.year}",
            f"{day.day} {month} {day.year}", f"the {_ordinal(day.day)} of {month} {day.year}",
            day.strftime("%Y/%m/%d")]


def _time_forms(text: str) -> list[str]:
    hour, minute = (int(x) for x in text.split(":"))
    half = "am" if hour < 12 else "pm"
    h12 = hour % 12 or 12
    clock = f"{h12}:{minute:02d}" if minute else f"{h12}"
    forms = [text, f"{clock} {half}", f"{clock}{half}"]
    if minute == 0:
        forms.append(f"{number_words(h12)} o'clock" + (" in the morning" if hour < 12 else
                                                       " in the afternoon" if hour < 18 else " in the evening"))
    if minute == 30:
        forms.append(f"half past {number_words(h12)} {half}")
    return forms


def surface_forms(value: Any) -> list[str]:
    """Every way the world may state ``value`` in a query; the canonical form comes first.

    Booleans have no surface form (a query says "with hourly detail", not "true"): they are
    the one value type the rule check cannot ground."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return _number_forms(value)
    if isinstance(value, str):
        if _DATE_RE.match(value):
            try:
                return _date_forms(value)
            except ValueError:
                return [value]
        if _TIME_RE.match(value):
            return _time_forms(value)
        return [value, *SYNONYMS.get(value, ())]
    if isinstance(value, (list, tuple)):
        return []  # arrays are grounded element by element
    return [str(value)]


def indirect_forms(value: Any) -> list[str]:
    """The non-canonical surface forms of ``value`` (what the ``indirect_values`` phrasing uses)."""
    return surface_forms(value)[1:]
