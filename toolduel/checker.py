"""BFCL-compatible verdicts: do a model's calls match the gold calls?

``check`` takes BFCL's own shapes (function list, decoded calls ``[{name: {arg: value}}]``,
``ground_truth``) and reaches the verdict BFCL's official pipeline reaches for the python AST
categories: the same ``valid`` and the same ``error_type`` string, rule for rule (string
normalisation, int accepted for float, optional ``""`` answers, one-level nested type checks,
dict and list-of-dict answers, greedy order-free matching of parallel calls, count rules).
``tests/test_checker_official.py`` holds it to that over every BFCL ground truth and many
mutated outputs. ``check_sample`` is the same check over toolduel's own types, and the
function-call reward calls it, so the number trained on is the number reported. The rules
for one argument's value live in ``toolduel.checker_values``.

Where the official checker would raise, this one returns an invalid verdict instead: the
checker is an RL reward and one odd output must not stop a training run. Such verdicts carry
a ``checker:*`` error type and the kind ``bad_sample`` when the sample itself (functions,
gold) cannot be judged. Three keys that JSON Schema leaves optional are read leniently where
BFCL would raise: a missing ``properties`` or ``required`` is empty, an array without
``items`` has no item type (toolduel's own tools, read from OpenAI schemas, often lack them).
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from toolduel.checker_values import OPTIONAL, Miss, check_argument, short_repr
from toolduel.schema import Call, GoldCall, Sample

KINDS = (
    "ok", "wrong_function", "missing_argument", "wrong_value", "wrong_type", "unexpected_argument",
    "wrong_count", "called_when_none_fits", "did_not_call", "unparseable",
    "bad_sample",  # the sample itself cannot be judged (no gold, unknown gold function, bad schema)
)

WRONG_FORMAT = "ast_decoder:decoder_wrong_output_format"
CALLED_WHEN_NONE_FITS = "irrelevance_error:decoder_success"
NO_CALL_FOR_RELEVANCE = "relevance_error:decoder_failed"
INTERNAL_ERROR = "checker:internal_error"

_KIND_OF_ERROR_TYPE = {
    CALLED_WHEN_NONE_FITS: "called_when_none_fits",
    NO_CALL_FOR_RELEVANCE: "did_not_call",
    "simple_function_checker:wrong_func_name": "wrong_function",
    "simple_function_checker:missing_required": "missing_argument",
    "simple_function_checker:missing_optional": "missing_argument",
    "simple_function_checker:unexpected_param": "unexpected_argument",
    # a verdict refines this one from the closest miss (see _no_match)
    "parallel_function_checker_no_order:cannot_find_match": "wrong_value",
}
# the families BFCL names by sub-case; every "...:wrong_count" is "wrong_count"
_KIND_OF_PREFIX = {"value_error:": "wrong_value", "dict_checker:": "wrong_value", "list_dict_checker:": "wrong_value",
                   "type_error:": "wrong_type", "ast_decoder:": "unparseable", "parse:": "unparseable",
                   "checker:": "bad_sample"}


@dataclass
class Verdict:
    """The checker's answer: BFCL's ``valid`` and ``error_type``, messages, and a coarse kind."""

    valid: bool
    error_type: str | None = None  # BFCL's "checker:subtype" string; None when valid
    errors: list[str] = field(default_factory=list)
    kind: str = "ok"  # one of KINDS, for the weakness report

    def to_dict(self) -> dict:
        return asdict(self)


def error_kind(error_type: str | None) -> str:
    """The coarse kind (one of ``KINDS``) of a BFCL or toolduel error type."""
    if error_type is None:
        return "ok"
    if error_type in _KIND_OF_ERROR_TYPE:
        return _KIND_OF_ERROR_TYPE[error_type]
    if error_type.endswith(":wrong_count"):
        return "wrong_count"
    for prefix, kind in _KIND_OF_PREFIX.items():
        if error_type.startswith(prefix):
            return kind
    return "bad_sample"


def _failed(error_type: str, message: str, *, no_call_made: bool = False, kind: str | None = None) -> Verdict:
    kind = kind or error_kind(error_type)
    if kind == "wrong_count" and no_call_made:
        kind = "did_not_call"
    return Verdict(valid=False, error_type=error_type, errors=[message], kind=kind)


def _never_raises(judge):
    """An unexpected exception becomes an invalid verdict, never a crash of the caller."""
    @functools.wraps(judge)
    def guarded(*args, **kwargs) -> Verdict:
        try:
            return judge(*args, **kwargs)
        except Exception as error:  # the last line of defence; tests assert it stays unused
            return _failed(INTERNAL_ERROR, f"{type(error).__name__}: {short_repr(error)}")
    return guarded


# ---------------------------------------------------------------- one call, then a list of calls

class _Rules(NamedTuple):
    """What one call is judged by: the function's schema and the gold call's answers."""

    name: str
    properties: dict
    required: list
    answers: dict  # argument -> list of possible answers


def _gold_arguments(gold: Any) -> dict | None:
    """``{name: {arg: [answers]}}`` -> ``{arg: [answers]}`` (None: not that shape)."""
    if type(gold) is not dict or not gold:
        return None
    arguments = next(iter(gold.values()))
    if type(arguments) is not dict or not all(type(a) is list for a in arguments.values()):
        return None
    return arguments


def _rules(spec: Any, gold: Any) -> _Rules | Miss:
    """The rules a BFCL function and a gold call set, or the ``Miss`` saying why they set none."""
    answers = _gold_arguments(gold)
    if answers is None:
        return Miss("checker:bad_gold", f"a gold call is {{name: {{arg: [answers]}}}}, got {short_repr(gold)}")
    parameters = spec.get("parameters", {}) if type(spec) is dict else None
    properties = parameters.get("properties", {}) if type(parameters) is dict else None
    required = parameters.get("required", []) if type(parameters) is dict else None
    readable = type(properties) is dict and type(spec.get("name")) is str and type(required) is list \
        and all(type(r) is str for r in required)  # a dict properties means a dict spec
    if not readable:
        return Miss("checker:bad_function_spec", f"unreadable function {short_repr(spec)}")
    return _Rules(spec["name"], properties, required, answers)


def _rules_by_gold_name(functions: list, gold: Any) -> _Rules | Miss:
    """BFCL picks the function by the gold call's name, not by the model's."""
    name = next(iter(gold), None) if type(gold) is dict else None
    spec = next((f for f in functions if type(f) is dict and f.get("name") == name), None)
    if spec is None and _gold_arguments(gold) is not None:
        return Miss("checker:unknown_gold_function", f"no listed function is named {short_repr(name)}")
    return _rules(spec, gold)


def _check_call(rules: _Rules, call: dict) -> Miss | None:
    """One decoded call ``{name: {arg: value}}`` (BFCL's simple_function_checker): the name, the
    required arguments, each given argument in the call's order, then the gold's arguments
    that may not be left out."""
    if rules.name not in call:
        return Miss("simple_function_checker:wrong_func_name",
                    f"expected a call to {rules.name!r}, got {short_repr(next(iter(call)))}")
    arguments = call[rules.name]
    for param in rules.required:
        if param not in arguments:
            return Miss("simple_function_checker:missing_required", f"missing required argument {param!r}")
    for param, value in arguments.items():
        if param not in rules.properties or param not in rules.answers:
            return Miss("simple_function_checker:unexpected_param", f"unexpected argument {short_repr(param)}")
        miss = check_argument(param, value, rules.properties[param], rules.answers[param])
        if miss is not None:
            return miss
    for param, answers in rules.answers.items():
        if param not in arguments and OPTIONAL not in answers:
            return Miss("simple_function_checker:missing_optional",
                        f"missing argument {param!r}, which the gold does not mark optional")
    return None


def _verdict_of_call(miss: Miss | None) -> Verdict:
    return Verdict(valid=True) if miss is None else _failed(miss.error_type, miss.message)


def _check_single(functions: list, calls: list, gold: list) -> Verdict:
    if len(calls) != 1:
        return _failed("simple_function_checker:wrong_count", f"expected 1 call, got {len(calls)}",
                       no_call_made=not calls and bool(gold))
    if not functions:  # BFCL judges by the first function and the first gold call
        return _failed("checker:bad_functions", "a simple sample needs a function")
    if not gold:
        return _failed("checker:bad_gold", "a simple sample needs a gold call")
    rules = _rules(functions[0], gold[0])
    return _verdict_of_call(rules if isinstance(rules, Miss) else _check_call(rules, calls[0]))


def _check_multiple(functions: list, calls: list, gold: list) -> Verdict:
    if len(calls) != len(gold):
        return _failed("multiple_function_checker:wrong_count", f"expected {len(gold)} call(s), got {len(calls)}",
                       no_call_made=not calls)
    if not gold:
        return _failed("checker:bad_gold", "a multiple sample needs a gold call")
    rules = _rules_by_gold_name(functions, gold[0])  # and BFCL checks the first call only
    return _verdict_of_call(rules if isinstance(rules, Miss) else _check_call(rules, calls[0]))


def _check_parallel(functions: list, calls: list, gold: list) -> Verdict:
    """Order-free: each gold call, in order, takes the first unmatched call that fits it
    (BFCL's greedy elimination, which can miss a matching that exists; kept for equal scores)."""
    if len(calls) != len(gold):
        return _failed("parallel_function_checker_no_order:wrong_count",
                       f"expected {len(gold)} call(s), got {len(calls)}", no_call_made=not calls)
    unmatched = list(range(len(calls)))
    for gold_index, gold_call in enumerate(gold):
        rules = _rules_by_gold_name(functions, gold_call)
        if isinstance(rules, Miss):
            return _verdict_of_call(rules)
        misses: list[tuple[int, Miss]] = []
        for index in unmatched:
            miss = _check_call(rules, calls[index])
            if miss is None:
                unmatched.remove(index)
                break
            misses.append((index, miss))
        else:
            return _no_match(gold_index, misses)
    return Verdict(valid=True)


def _no_match(gold_index: int, misses: list[tuple[int, Miss]]) -> Verdict:
    """The kind comes from the closest candidate: one that called the right function, if any."""
    right_function = [m for _, m in misses if m.error_type != "simple_function_checker:wrong_func_name"]
    kind = error_kind(right_function[0].error_type) if right_function else "wrong_function"
    verdict = _failed("parallel_function_checker_no_order:cannot_find_match",
                      f"no call matches gold call {gold_index}", kind=kind)
    verdict.errors += [f"call {index}: {miss.error_type}: {miss.message}" for index, miss in misses]
    return verdict


def is_call_list(decoded: Any) -> bool:
    """BFCL's function-calling format: a list of ``{name: {arg: value}}`` (``[]`` included)."""
    return type(decoded) is list and all(
        type(item) is dict and len(item) == 1 and type(next(iter(item.values()))) is dict for item in decoded)


def _made_a_call(decoded: Any) -> bool:
    """BFCL's relevance rule: decoded output in call format and not empty."""
    return is_call_list(decoded) and len(decoded) > 0


@_never_raises
def check(functions: list[dict], model_calls: Any, possible_answer: list[dict], category: str) -> Verdict:
    """BFCL's verdict on one entry of a python AST ``category`` (``simple_python``, ``multiple``,
    ``live_parallel``, ``irrelevance``, ...; BFCL dispatches on the words in the name).

    ``functions`` is BFCL's function list, ``possible_answer`` its ``ground_truth`` list, and
    ``model_calls`` the decoded output, ``[{name: {arg: value}}]``; any other value is judged,
    never raised on."""
    if type(category) is not str:
        return _failed("checker:bad_category", f"category must be a string, got {short_repr(category)}")
    if "irrelevance" in category:  # any output that is not a call passes, as in BFCL's runner
        if _made_a_call(model_calls):
            return _failed(CALLED_WHEN_NONE_FITS,
                           f"no function fits, yet the model called {short_repr(model_calls)}")
        return Verdict(valid=True)
    if "relevance" in category:  # live_relevance: any call passes
        if _made_a_call(model_calls):
            return Verdict(valid=True)
        return _failed(NO_CALL_FOR_RELEVANCE, "a function fits, yet the model made no call")
    if not is_call_list(model_calls):
        return _failed(WRONG_FORMAT, f"not a list of {{name: {{arg: value}}}}: {short_repr(model_calls)}")
    if type(functions) is not list:
        return _failed("checker:bad_functions", f"functions must be a list, got {short_repr(functions)}")
    if type(possible_answer) is not list:
        return _failed("checker:bad_gold", f"the gold must be a list, got {short_repr(possible_answer)}")
    if "parallel" in category:
        return _check_parallel(functions, model_calls, possible_answer)
    if "multiple" in category:
        return _check_multiple(functions, model_calls, possible_answer)
    return _check_single(functions, model_calls, possible_answer)


# ---------------------------------------------------------------- toolduel's own types

def _parse_error_type(error: Any) -> str:
    """``parse:<slug of the text before the first ':'>``, e.g. ``parse:invalid_json``."""
    head = str(error).split(":", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "_", head.lower()).strip("_")[:40].strip("_")
    return f"parse:{slug or 'error'}"


def _sample_category(sample: Sample) -> str:
    """``Sample.check_category``, except live_relevance: it has no gold either, yet wants a call."""
    return "live_relevance" if sample.category == "live_relevance" else sample.check_category


@_never_raises
def check_sample(sample: Sample, calls: Any) -> Verdict:
    """``check`` over toolduel's types. ``calls`` is a ``list[Call]``, or a parse result with
    ``.calls`` and ``.error``. An output that could not be parsed is ``unparseable``, except
    where no call is wanted: there it counts as "no call" and passes, as in BFCL's runner
    (whose decoder failing on plain text is exactly how an abstention passes), so that our
    irrelevance score stays BFCL's. A broken call attempt thus also passes there; a model
    cannot gain from that, since a plain-text answer passes too."""
    parse_error = getattr(calls, "error", None)
    call_list = getattr(calls, "calls", calls)
    category = _sample_category(sample)
    if parse_error is not None:
        if "irrelevance" in category:
            return Verdict(valid=True)
        return _failed(_parse_error_type(parse_error), f"output could not be parsed: {parse_error}")
    if isinstance(call_list, (list, tuple)):
        call_list = [call.to_bfcl() if isinstance(call, Call) else call for call in call_list]
    return check([tool.to_bfcl() for tool in sample.tools], call_list,
                 [gold.to_bfcl() for gold in sample.gold], category)


def score(verdict: Verdict) -> float:
    """The binary FC reward: 1.0 for a valid verdict, else 0.0."""
    return 1.0 if verdict.valid else 0.0


PARTIAL_CREDIT_CAP = 0.9  # an invalid answer never earns as much as a valid one


def _call_credit(tool_spec: dict | None, call: Call, gold: GoldCall) -> float:
    """0.5 for the right function, plus 0.5 times the share of right arguments among those the
    gold or the call names (left out counts as right where the gold allows it)."""
    if call.name != gold.name or tool_spec is None:
        return 0.0
    properties = tool_spec["parameters"]["properties"]
    names = set(gold.arguments) | set(call.arguments)
    right = 0
    for name in names:
        if name not in call.arguments:
            right += OPTIONAL in gold.arguments.get(name, [])
        elif name in gold.arguments and name in properties:
            right += check_argument(name, call.arguments[name], properties[name], gold.arguments[name]) is None
    return 0.5 + 0.5 * (right / len(names) if names else 1.0)


def partial_credit(sample: Sample, calls: Any) -> float:
    """A shaped FC reward in [0, 1]: 1.0 for a valid answer; otherwise each gold call takes the
    unused call that earns it the most ``_call_credit``, the sum is divided by the larger of the
    gold and call counts (extra calls cost), and the result is capped below 1."""
    verdict = check_sample(sample, calls)
    if verdict.valid:
        return 1.0
    call_list = getattr(calls, "calls", calls)
    if verdict.kind in ("unparseable", "bad_sample") or not sample.gold or not isinstance(call_list, (list, tuple)):
        return 0.0
    call_list = [call for call in call_list if isinstance(call, Call)]
    if not call_list:
        return 0.0
    tool_specs = {tool.name: tool.to_bfcl() for tool in sample.tools}
    unused = list(call_list)
    earned = 0.0
    for gold in sample.gold:
        credits = [_call_credit(tool_specs.get(gold.name), call, gold) for call in unused]
        best = max(range(len(credits)), key=credits.__getitem__, default=None)
        if best is not None and credits[best] > 0:
            earned += credits[best]
            unused.pop(best)
    return min(earned / max(len(sample.gold), len(call_list)), PARTIAL_CREDIT_CAP)
