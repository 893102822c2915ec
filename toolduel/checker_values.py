"""BFCL's rules for one argument's value: its type, then its value among the possible answers.

Rule for rule as in BFCL's ``ast_checker``: strings compared without case, spaces and
``,./-_*^``; an int accepted for a float; a gold value of another type than the schema's read
as a variable and compared as is; array items type-checked one level deep; dicts and lists of
dicts matched key by key against their answers. ``toolduel.checker`` judges whole calls with
``check_argument``; a failure is a ``Miss`` carrying BFCL's error type.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from typing import Any

# BFCL's python type names -> the type a value must have. BFCL checks "any" as a string.
PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool,
                "array": list, "tuple": list, "dict": dict, "any": str}
_TYPES_WITH_ITEMS = ("array", "tuple")  # BFCL checks the items of these, one level deep
OPTIONAL = ""  # in a list of possible answers: the argument may be left out

_PLAIN = (bool, float, type(None))  # printed whole; others go through reprlib's limits
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 80, 80, 4


@dataclass(frozen=True)
class Miss:
    """The first failure found in one call: BFCL stops at the first one too."""

    error_type: str
    message: str


def _is_short(value: Any) -> bool:
    return type(value) in _PLAIN or (type(value) is str and len(value) <= 80) or \
        (type(value) is int and -10**15 < value < 10**15)


def short_repr(value: Any) -> str:
    """A short repr for messages; values can be huge, deeply nested, or refuse to print."""
    if _is_short(value) or (type(value) is list and len(value) <= 8 and all(map(_is_short, value))):
        return repr(value)  # the common case, at C speed
    try:
        return _SHORT.repr(value)
    except Exception:  # e.g. an int past Python's digit limit
        return f"<{type(value).__name__}>"


_IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")  # "April 1, 2024" == "april 1 2024"


def normalize_string(text: str) -> str:
    """BFCL's string normalisation: drop `` ,./-_*^``, lowercase, ``'`` -> ``"``."""
    return _IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _normalized(value: Any) -> Any:
    return normalize_string(value) if type(value) is str else value


def _answer_type(answers: list) -> type | None:
    """The type of the first answer that is not the optional marker (BFCL's expected type)."""
    for answer in answers:
        if answer != OPTIONAL:
            return type(answer)
    return None


def _items_fit(value: list, answers: list, item_type: type) -> bool:
    """BFCL's one-level nested check: the items fit the item type (or the type of the items of
    one answer) for at least one answer; a non-list answer (``""``) lets any items pass."""
    for answer in answers:
        if type(answer) is not list:
            return True
        answer_item_type = _answer_type(answer)
        if all(type(item) is item_type or type(item) is answer_item_type for item in value):
            return True
    return False


def _check_type(param: str, value: Any, answers: list, expected: type,
                item_type: type | None) -> tuple[Miss | None, bool]:
    """(failure, is_variable). A value of the gold's type passes even where the schema asks for
    another: BFCL's gold writes variables (``"x"`` for an integer) that way. Then, as BFCL does,
    the value is compared to the answers as is, with no normalisation."""
    answer_type = _answer_type(answers)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item_type is None or _items_fit(value, answers, item_type):
            return None, is_variable
        if type(value) is answer_type:  # BFCL reports the nested failure only in this case
            return Miss("type_error:nested",
                        f"{param!r}: items of {short_repr(value)} are not all {item_type.__name__}"), True
    elif answer_type is not None and type(value) is answer_type:
        return None, True
    return Miss("type_error:simple",
                f"{param!r}: expected {expected.__name__}, got {type(value).__name__} {short_repr(value)}"), False


def _check_string(param: str, value: str, answers: list) -> Miss | None:
    if normalize_string(value) in [normalize_string(a) for a in answers if type(a) is str]:
        return None
    return Miss("value_error:string", f"{param!r}: {short_repr(value)} is none of {short_repr(answers)} "
                                      "(compared without case, spaces and ,./-_*^)")


def _check_list(param: str, value: list, answers: list) -> Miss | None:
    """Items compared one by one, strings normalised. An answer is read as a sequence the way
    BFCL reads it: ``""`` is the empty list, so ``[]`` passes for an optional argument."""
    candidates = [[_normalized(item) for item in answer] for answer in answers
                  if isinstance(answer, (list, tuple, str))]
    if [_normalized(item) for item in value] in candidates:
        return None
    return Miss("value_error:list/tuple", f"{param!r}: {short_repr(value)} is none of {short_repr(answers)}")


def _dict_mismatch(value: Any, answer: Any) -> Miss | None:
    """One dict against one answer ``{key: [values]}``; a missing key outranks a wrong value."""
    if type(value) is not dict:  # an item of a list of dicts (BFCL raises here)
        return Miss("type_error:nested", f"expected a dict, got {short_repr(value)}")
    if type(answer) is not dict:
        return Miss("dict_checker:unclear", f"the answer {short_repr(answer)} is not a dict")
    miss = None
    for key, item in value.items():
        if key not in answer:
            miss = Miss("value_error:dict_key", f"unexpected dict key {short_repr(key)}")
            break
        options = answer[key] if isinstance(answer[key], (list, tuple, str)) else []  # BFCL raises on others
        if _normalized(item) not in [_normalized(option) for option in options]:
            miss = Miss("value_error:dict_value",
                        f"dict key {short_repr(key)}: {short_repr(item)} is none of {short_repr(options)}")
            break
    for key, options in answer.items():
        if key not in value and (not isinstance(options, (list, tuple, str)) or OPTIONAL not in options):
            return Miss("value_error:dict_key", f"missing dict key {short_repr(key)}")
    return miss


def _check_dict(value: Any, answers: list) -> Miss | None:
    """Passes if one answer (``""`` skipped) fits; else the last answer's failure, as in BFCL."""
    miss = Miss("dict_checker:unclear", "no dict answer to compare with")
    for answer in answers:
        if answer == OPTIONAL:
            continue
        miss = _dict_mismatch(value, answer)
        if miss is None:
            return None
    return miss


def _check_list_of_dicts(value: list, answers: list) -> Miss | None:
    """Dicts matched in order against one answer's dicts; else the last answer's failure."""
    miss = Miss("list_dict_checker:unclear", "no list of dicts to compare with")
    for answer in answers:
        if not isinstance(answer, (list, tuple, str)):  # BFCL raises; "" is read as []
            miss = Miss("list_dict_checker:unclear", f"the answer {short_repr(answer)} is not a list")
            continue
        if len(value) != len(answer):
            miss = Miss("value_error:list_dict_count",
                        f"{len(value)} dicts, the answer {short_repr(answer)} has {len(answer)}")
            continue
        for item, answer_dict in zip(value, answer):
            miss = _check_dict(item, [answer_dict])
            if miss is not None:
                break
        else:
            return None
    return miss


def check_argument(param: str, value: Any, spec: Any, answers: list) -> Miss | None:
    """One argument's value against its schema and its list of possible answers."""
    type_name = spec.get("type") if type(spec) is dict else None
    items = spec.get("items") if type(spec) is dict and type_name in _TYPES_WITH_ITEMS else None
    item_type_name = items.get("type") if type(items) is dict else None
    if type_name not in PYTHON_TYPES or (item_type_name is not None and item_type_name not in PYTHON_TYPES):
        return Miss("checker:bad_function_spec", f"{param!r}: no BFCL type in {short_repr(spec)}")
    expected = PYTHON_TYPES[type_name]
    item_type = PYTHON_TYPES.get(item_type_name)
    if type_name == "tuple" and type(value) is tuple:  # gold tuples became lists in JSON
        value = list(value)
    if type_name == "float" and type(value) is int:  # python would convert it too
        try:
            value = float(value)
        except OverflowError:
            return Miss("value_error:others", f"{param!r}: {short_repr(value)} is too large for a float")
    miss, is_variable = _check_type(param, value, answers, expected, item_type)
    if miss is not None:
        return miss
    if not is_variable:
        if expected is dict:
            return _check_dict(value, answers)
        if expected is list and item_type is dict:
            return _check_list_of_dicts(value, answers)
        if expected is str:
            return _check_string(param, value, answers)
        if expected is list:
            return _check_list(param, value, answers)
    if value in answers:
        return None
    return Miss("value_error:others", f"{param!r}: {short_repr(value)} is none of {short_repr(answers)}")
