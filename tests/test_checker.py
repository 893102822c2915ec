"""toolduel.checker: BFCL's rules one by one, toolduel's entry point, rewards, hostile input.

Each case gives BFCL's verdict as (valid, error_type, kind); test_checker_official.py holds the
same rules to BFCL's own checker over its whole data set.
"""

import copy
import json
import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from toolduel.checker import (
    INTERNAL_ERROR,
    KINDS,
    PARTIAL_CREDIT_CAP,
    Verdict,
    check,
    check_sample,
    error_kind,
    partial_credit,
    score,
)
from toolduel.checker_values import normalize_string
from toolduel.schema import Call, GoldCall, Sample, Tool


def function(name, required=(), **properties):
    return {"name": name, "description": "", "parameters": {
        "type": "dict", "properties": properties, "required": list(required)}}


WEATHER = function("get_weather", required=["city"], city={"type": "string"}, days={"type": "integer"},
                   unit={"type": "string"}, hourly={"type": "boolean"})
TIME = function("get_time", required=["zone"], zone={"type": "string"})
GOLD = [{"get_weather": {"city": ["New York", "NYC"], "days": [3], "unit": ["", "celsius"]}}]


def verdict(calls, gold=GOLD, functions=(WEATHER, TIME), category="simple_python"):
    result = check(list(functions), calls, gold, category)
    return result.valid, result.error_type, result.kind


def one_arg(type_spec, answers, value, category="simple_python"):
    """A function with one parameter ``x`` of ``type_spec``; gold answers; the model gives ``value``."""
    return verdict([{"f": {"x": value}}], gold=[{"f": {"x": answers}}],
                   functions=[function("f", x=type_spec)], category=category)


OK = (True, None, "ok")


# ---------------------------------------------------------------- one call

def test_exact_and_alternative_answers_pass():
    assert verdict([{"get_weather": {"city": "New York", "days": 3}}]) == OK
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "unit": "celsius"}}]) == OK  # any listed answer
    assert verdict([{"get_weather": {"days": 3, "city": "NYC"}}]) == OK  # argument order is free


def test_strings_compare_without_case_spaces_and_some_punctuation():
    assert verdict([{"get_weather": {"city": "new-york.", "days": 3}}]) == OK  # ' ,./-_*^' dropped
    assert verdict([{"get_weather": {"city": "N_Y_C", "days": 3}}]) == OK
    assert verdict([{"get_weather": {"city": "New York!", "days": 3}}]) == (False, "value_error:string", "wrong_value")
    assert normalize_string("It's 5 P.M., O_K") == 'it"s5pmok'  # ' becomes ", so quotes match either way
    assert one_arg({"type": "string"}, ['say "hi"'], "Say 'hi'") == OK


def test_optional_arguments():
    # "" in the answers: may be left out, or given as one of the other answers
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "unit": "Celsius"}}]) == OK
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "unit": "kelvin"}}]) == \
        (False, "value_error:string", "wrong_value")
    # BFCL normalises the model's "" and the marker alike: an explicit empty string passes too
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "unit": ""}}]) == OK
    # days is not required by the schema, but the gold has no "": leaving it out fails
    assert verdict([{"get_weather": {"city": "NYC"}}]) == \
        (False, "simple_function_checker:missing_optional", "missing_argument")


def test_missing_required_is_reported_before_anything_else():
    assert verdict([{"get_weather": {"days": "three"}}]) == \
        (False, "simple_function_checker:missing_required", "missing_argument")


def test_unexpected_arguments():
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "country": "US"}}]) == \
        (False, "simple_function_checker:unexpected_param", "unexpected_argument")  # not in the schema
    assert verdict([{"get_weather": {"city": "NYC", "days": 3, "hourly": True}}]) == \
        (False, "simple_function_checker:unexpected_param", "unexpected_argument")  # in the schema, not the gold


def test_wrong_function_name():
    assert verdict([{"get_time": {"zone": "EST"}}]) == \
        (False, "simple_function_checker:wrong_func_name", "wrong_function")
    assert verdict([{"Get_Weather": {"city": "NYC", "days": 3}}]) == \
        (False, "simple_function_checker:wrong_func_name", "wrong_function")  # names are exact


def test_types():
    assert one_arg({"type": "float"}, [2.0], 2) == OK  # an int is accepted for a float
    assert one_arg({"type": "float"}, [2.0], 2.0) == OK
    assert one_arg({"type": "integer"}, [2], 2.0) == (False, "type_error:simple", "wrong_type")  # not the reverse
    assert one_arg({"type": "integer"}, [1], True) == (False, "type_error:simple", "wrong_type")  # bool is no int
    assert one_arg({"type": "float"}, [2.0], "2.0") == (False, "type_error:simple", "wrong_type")
    assert one_arg({"type": "any"}, ["5"], 5) == (False, "type_error:simple", "wrong_type")  # "any" means string
    assert one_arg({"type": "tuple", "items": {"type": "integer"}}, [[1, 2]], (1, 2)) == OK  # tuple read as list
    # an int too large for a float cannot equal any answer (BFCL raises OverflowError here)
    assert one_arg({"type": "float"}, [1.0], 10**400) == (False, "value_error:others", "wrong_value")


def test_a_gold_value_of_another_type_is_a_variable():
    # BFCL's gold writes variables as strings: "x" for an integer passes, compared as is
    assert one_arg({"type": "integer"}, ["num_items"], "num_items") == OK
    assert one_arg({"type": "integer"}, ["num_items"], "NUM_ITEMS") == (False, "value_error:others", "wrong_value")
    assert one_arg({"type": "integer"}, ["num_items"], 5) == (False, "value_error:others", "wrong_value")
    assert one_arg({"type": "string"}, [None], None) == OK  # a None gold accepts None


def test_values_that_are_not_strings_compare_by_equality():
    assert one_arg({"type": "integer"}, [3, 4], 4) == OK
    assert one_arg({"type": "integer"}, [3], 5) == (False, "value_error:others", "wrong_value")
    assert one_arg({"type": "boolean"}, [False], True) == (False, "value_error:others", "wrong_value")
    assert one_arg({"type": "float"}, [1.0], math.nan) == (False, "value_error:others", "wrong_value")


def test_lists_and_nested_item_types():
    ints = {"type": "array", "items": {"type": "integer"}}
    assert one_arg(ints, [[1, 2]], [1, 2]) == OK
    assert one_arg(ints, [[1, 2]], [2, 1]) == (False, "value_error:list/tuple", "wrong_value")  # order matters
    assert one_arg(ints, [[1, 2]], [1, "2"]) == (False, "type_error:nested", "wrong_type")
    assert one_arg(ints, [[1, 2]], "1, 2") == (False, "type_error:simple", "wrong_type")
    strings = {"type": "array", "items": {"type": "string"}}
    assert one_arg(strings, [["New York", "LA"]], ["new york", "L.A."]) == OK  # items normalised
    # an item may also take the type of the gold's items: int items pass for floats if the gold has ints
    floats = {"type": "array", "items": {"type": "float"}}
    assert one_arg(floats, [[1, 2.5]], [1, 2.5]) == OK
    assert one_arg(floats, [[1.5, 2.5]], [1, 2.5]) == (False, "type_error:nested", "wrong_type")  # no int->float
    # with "" among the answers BFCL's nested check lets any items through, and reads "" as []
    assert one_arg(ints, ["", [1]], ["a"]) == (False, "value_error:list/tuple", "wrong_value")
    assert one_arg(ints, ["", [1]], []) == OK
    # no answers at all: a nested failure is reported as a simple type error
    assert one_arg(ints, [], ["a"]) == (False, "type_error:simple", "wrong_type")


def test_dicts():
    spec = {"type": "dict", "properties": {}}
    answers = [{"a": ["x"], "b": ["", 1]}]
    assert one_arg(spec, answers, {"a": "X."}) == OK  # values normalised, b optional
    assert one_arg(spec, answers, {"a": "x", "b": 1}) == OK
    assert one_arg(spec, answers, {"a": "y"}) == (False, "value_error:dict_value", "wrong_value")
    assert one_arg(spec, answers, {"a": "x", "c": 1}) == (False, "value_error:dict_key", "wrong_value")
    assert one_arg(spec, answers, {"b": 1}) == (False, "value_error:dict_key", "wrong_value")  # a is missing
    assert one_arg(spec, answers, {"b": 2}) == (False, "value_error:dict_key", "wrong_value")  # missing outranks wrong
    assert one_arg(spec, ["", {"a": ["x"]}, {"a": ["z"]}], {"a": "z"}) == OK  # any answer may fit
    assert one_arg(spec, [""], {"a": "z"}) == (False, "dict_checker:unclear", "wrong_value")  # nothing to compare


def test_lists_of_dicts():
    spec = {"type": "array", "items": {"type": "dict"}}
    answers = [[{"a": ["x"]}, {"a": ["y"]}]]
    assert one_arg(spec, answers, [{"a": "x"}, {"a": "Y"}]) == OK
    assert one_arg(spec, answers, [{"a": "y"}, {"a": "x"}]) == (False, "value_error:dict_value", "wrong_value")
    assert one_arg(spec, answers, [{"a": "x"}]) == (False, "value_error:list_dict_count", "wrong_value")
    assert one_arg(spec, ["", [{"a": ["x"]}]], []) == OK  # "" read as the empty list
    # items that are no dicts, let through by the "" answer: BFCL raises, we call it a type error
    assert one_arg(spec, ["", [{"a": ["x"]}]], ["x"]) == (False, "type_error:nested", "wrong_type")


# ---------------------------------------------------------------- counts, formats, categories

def test_single_call_categories_want_exactly_one_call():
    right = {"get_weather": {"city": "NYC", "days": 3}}
    assert verdict([right, right]) == (False, "simple_function_checker:wrong_count", "wrong_count")
    assert verdict([]) == (False, "simple_function_checker:wrong_count", "did_not_call")
    assert verdict([right], category="simple") == OK
    assert verdict([right], category="live_simple") == OK


def test_outputs_not_in_call_format():
    for output in (None, "Sure! get_weather(city='NYC')", {"get_weather": {}}, [{"a": {}, "b": {}}],
                   [{"get_weather": "city=NYC"}], [["get_weather"]], [{}], ({"get_weather": {}},)):
        assert verdict(output) == (False, "ast_decoder:decoder_wrong_output_format", "unparseable"), output


def test_multiple_picks_the_function_by_the_gold_name():
    right = {"get_weather": {"city": "NYC", "days": 3}}
    assert verdict([right], category="multiple") == OK
    assert verdict([{"get_time": {"zone": "EST"}}], category="live_multiple") == \
        (False, "simple_function_checker:wrong_func_name", "wrong_function")
    assert verdict([right, right], category="multiple") == \
        (False, "multiple_function_checker:wrong_count", "wrong_count")
    assert verdict([], category="multiple") == (False, "multiple_function_checker:wrong_count", "did_not_call")
    # BFCL checks only the first call in "multiple", even when the gold has two
    two = GOLD + [{"get_time": {"zone": ["EST"]}}]
    assert verdict([right, {"nonsense": {}}], gold=two, category="multiple") == OK


def test_parallel_calls_match_in_any_order():
    gold = [{"get_weather": {"city": ["NYC"], "days": [3]}}, {"get_weather": {"city": ["LA"], "days": [3]}}]
    nyc, la = {"get_weather": {"city": "NYC", "days": 3}}, {"get_weather": {"city": "LA", "days": 3}}
    assert verdict([la, nyc], gold=gold, category="parallel") == OK
    assert verdict([nyc, la], gold=gold, category="live_parallel") == OK
    assert verdict([nyc, nyc], gold=gold, category="parallel") == \
        (False, "parallel_function_checker_no_order:cannot_find_match", "wrong_value")  # kind of the closest miss
    assert verdict([nyc, {"get_time": {"zone": "EST"}}], gold=gold, category="parallel") == \
        (False, "parallel_function_checker_no_order:cannot_find_match", "wrong_function")
    assert verdict([nyc], gold=gold, category="parallel") == \
        (False, "parallel_function_checker_no_order:wrong_count", "wrong_count")
    assert verdict([], gold=gold, category="parallel_multiple") == \
        (False, "parallel_function_checker_no_order:wrong_count", "did_not_call")


def test_parallel_matching_is_greedy_like_bfcl():
    # gold 0 takes the first call that fits it; then gold 1 is left with a call it rejects,
    # although giving gold 0 the second call would have matched both
    gold = [{"get_weather": {"city": ["NYC", "Boston"], "days": [3]}}, {"get_weather": {"city": ["NYC"], "days": [3]}}]
    nyc, boston = {"get_weather": {"city": "NYC", "days": 3}}, {"get_weather": {"city": "Boston", "days": 3}}
    assert verdict([nyc, boston], gold=gold, category="parallel") == \
        (False, "parallel_function_checker_no_order:cannot_find_match", "wrong_value")
    assert verdict([boston, nyc], gold=gold, category="parallel") == OK


def test_irrelevance_passes_anything_that_is_not_a_call():
    for output in ([], None, "No function fits.", [{}], [{"get_weather": "x"}]):
        assert verdict(output, gold=[], category="irrelevance") == OK, output
    assert verdict([{"get_time": {}}], gold=[], category="live_irrelevance") == \
        (False, "irrelevance_error:decoder_success", "called_when_none_fits")


def test_live_relevance_passes_any_call():
    assert verdict([{"made_up": {"q": 1}}], gold=[], category="live_relevance") == OK
    assert verdict([], gold=[], category="live_relevance") == (False, "relevance_error:decoder_failed", "did_not_call")


def test_samples_that_cannot_be_judged_are_invalid_not_a_crash():
    right = [{"get_weather": {"city": "NYC", "days": 3}}]
    assert verdict(right, gold=[{"get_forecast": {"city": ["NYC"]}}], category="multiple") == \
        (False, "checker:unknown_gold_function", "bad_sample")  # BFCL raises TypeError
    assert verdict(right, gold=[]) == (False, "checker:bad_gold", "bad_sample")  # BFCL raises IndexError
    assert verdict(right, gold=[{"get_weather": "NYC"}]) == (False, "checker:bad_gold", "bad_sample")
    assert verdict(right, functions=[]) == (False, "checker:bad_functions", "bad_sample")
    assert verdict(right, functions=[function("get_weather", city={"type": "number"}, days={"type": "integer"})]) \
        == (False, "checker:bad_function_spec", "bad_sample")  # "number" is no BFCL type
    assert check(None, right, GOLD, "simple").error_type == "checker:bad_functions"
    assert check([WEATHER], right, GOLD, None).error_type == "checker:bad_category"


def test_schema_keys_json_schema_leaves_optional_default_to_empty():
    # BFCL raises KeyError on these; toolduel's own tools (from OpenAI schemas) may lack them
    no_required = {"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "array"}}}}
    assert verdict([{"f": {"x": [1, "a"]}}], gold=[{"f": {"x": [[1, "a"]]}}], functions=[no_required]) == OK
    no_properties = {"name": "g", "parameters": {"type": "dict"}}
    assert verdict([{"g": {}}], gold=[{"g": {}}], functions=[no_properties]) == OK


# ---------------------------------------------------------------- the verdict itself

def test_error_kinds():
    assert error_kind(None) == "ok"
    assert error_kind("simple_function_checker:missing_optional") == "missing_argument"
    assert error_kind("parallel_function_checker_enforce_order:wrong_count") == "wrong_count"
    assert error_kind("value_error:list_dict_count") == "wrong_value"
    assert error_kind("list_dict_checker:unclear") == "wrong_value"
    assert error_kind("type_error:js") == "wrong_type"
    assert error_kind("ast_decoder:decoder_failed") == "unparseable"
    assert error_kind("parse:invalid_json") == "unparseable"
    assert error_kind("checker:bad_gold") == "bad_sample"


def test_verdict_to_dict_is_json():
    result = check([WEATHER], [{"get_weather": {"city": "Paris", "days": 3}}], GOLD, "simple")
    assert json.loads(json.dumps(result.to_dict())) == {
        "valid": False, "error_type": "value_error:string", "kind": "wrong_value",
        "errors": ["'city': 'Paris' is none of ['New York', 'NYC'] (compared without case, spaces and ,./-_*^)"]}
    assert Verdict(valid=True).to_dict() == {"valid": True, "error_type": None, "errors": [], "kind": "ok"}


def test_check_leaves_its_inputs_alone():
    calls = [{"get_weather": {"city": "NYC", "days": 3}}]
    functions, gold = [WEATHER, TIME], copy.deepcopy(GOLD)
    before = copy.deepcopy((functions, calls, gold))
    check(functions, calls, gold, "multiple")
    assert (functions, calls, gold) == before


# ---------------------------------------------------------------- toolduel's types and rewards

@dataclass
class Parsed:
    """Stand-in for the parser's result: calls, and an error when the text could not be read."""

    calls: list
    error: str | None = None


def weather_sample(gold=None, category="simple_python"):
    gold = [GoldCall.from_bfcl(g) for g in (GOLD if gold is None else gold)]
    return Sample(id="s1", tools=[Tool.from_bfcl(WEATHER)], messages=[{"role": "user", "content": "NYC, 3 days?"}],
                  gold=gold, category=category)


def test_check_sample_reads_calls_and_parse_results():
    sample = weather_sample()
    right = Call("get_weather", {"city": "NYC", "days": 3})
    assert check_sample(sample, [right]) == Verdict(valid=True)
    assert check_sample(sample, Parsed([right])) == Verdict(valid=True)
    assert check_sample(sample, Parsed([], "invalid JSON in <tool_call>: Expecting value")).to_dict() == {
        "valid": False, "error_type": "parse:invalid_json_in_tool_call", "kind": "unparseable",
        "errors": ["output could not be parsed: invalid JSON in <tool_call>: Expecting value"]}
    assert check_sample(sample, [{"get_weather": {"city": "NYC", "days": 3}}]).valid  # BFCL dicts pass through
    assert check_sample(sample, ["get_weather"]).error_type == "ast_decoder:decoder_wrong_output_format"


def test_check_sample_with_no_gold():
    no_gold = weather_sample(gold=[], category="synthetic")  # check_category: "irrelevance"
    assert check_sample(no_gold, []).valid
    assert check_sample(no_gold, Parsed([], "unreadable")).valid  # text that is no call: an abstention, as in BFCL
    assert check_sample(no_gold, [Call("get_weather", {"city": "NYC"})]).kind == "called_when_none_fits"
    relevance = weather_sample(gold=[], category="live_relevance")  # no gold, yet a call is wanted
    assert check_sample(relevance, [Call("get_weather", {})]).valid
    assert check_sample(relevance, []).kind == "did_not_call"


def test_check_sample_on_the_real_parser():
    from toolduel.parsing import parse_calls

    sample = weather_sample()
    tagged = '<tool_call>{"name": "get_weather", "arguments": {"city": "NYC", "days": 3}}</tool_call>'
    assert check_sample(sample, parse_calls(tagged)).valid
    assert check_sample(sample, parse_calls('get_weather(city="new york", days=3)')).valid  # BFCL's python syntax
    broken = parse_calls('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>')
    assert (check_sample(sample, broken).error_type, check_sample(sample, broken).kind) == \
        ("parse:invalid_json", "unparseable")  # the parser's "<kind>: <detail>" gives the subtype
    assert check_sample(sample, parse_calls("It will be sunny.")).kind == "did_not_call"


def test_score_is_the_binary_reward():
    assert score(Verdict(valid=True)) == 1.0
    assert score(Verdict(valid=False, error_type="type_error:simple", kind="wrong_type")) == 0.0


def test_partial_credit():
    sample = weather_sample()  # gold arguments: city, days, unit (optional)
    assert partial_credit(sample, [Call("get_weather", {"city": "NYC", "days": 3})]) == 1.0
    # right function; city wrong, days right, unit left out (allowed): 0.5 + 0.5 * 2/3
    assert partial_credit(sample, [Call("get_weather", {"city": "Paris", "days": 3})]) == 0.5 + 0.5 * (2 / 3)
    # an argument the gold does not have counts among the arguments, as a wrong one: 0.5 + 0.5 * 3/4
    assert partial_credit(sample, [Call("get_weather", {"city": "NYC", "days": 3, "hourly": True})]) == 0.875
    assert partial_credit(sample, [Call("get_time", {"zone": "EST"})]) == 0.0  # wrong function
    # a second, extra call halves the credit of the right one, and the cap keeps it under 1
    right = Call("get_weather", {"city": "NYC", "days": 3})
    assert partial_credit(sample, [right, right]) == 0.5
    assert partial_credit(sample, Parsed([], "invalid JSON")) == 0.0
    assert partial_credit(weather_sample(gold=[], category="irrelevance"), [right]) == 0.0


def test_partial_credit_of_parallel_calls():
    # each gold call takes the unused call that earns it most, in gold order: gold 0 takes NYC,
    # gold 1 is left with Boston (days right, city wrong): (1.0 + 0.75) / 2
    gold = [{"get_weather": {"city": ["NYC", "Boston"], "days": [3]}}, {"get_weather": {"city": ["NYC"], "days": [3]}}]
    sample = weather_sample(gold=gold, category="parallel")
    calls = [Call("get_weather", {"city": "NYC", "days": 3}), Call("get_weather", {"city": "Boston", "days": 3})]
    assert partial_credit(sample, calls) == 0.875
    assert partial_credit(sample, calls[::-1]) == 1.0  # the order BFCL's greedy matching accepts


def test_partial_credit_stays_below_a_valid_answer():
    # days is required, yet the gold leaves it out: no answer is valid, every argument given is right
    tool = Tool.from_bfcl(function("get_weather", required=["city", "days"], city={"type": "string"},
                                   days={"type": "integer"}))
    sample = Sample(id="s2", tools=[tool], messages=[], gold=[GoldCall("get_weather", {"city": ["NYC"]})])
    calls = [Call("get_weather", {"city": "NYC"})]
    assert check_sample(sample, calls).error_type == "simple_function_checker:missing_required"
    assert partial_credit(sample, calls) == PARTIAL_CREDIT_CAP


# ---------------------------------------------------------------- hostile input

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25)
argument_names = st.sampled_from(["city", "days", "unit", "hourly", "zone", "other"]) | st.text(max_size=6)
function_names = st.sampled_from(["get_weather", "get_time", "unknown"]) | st.text(max_size=6)
calls_in_format = st.lists(st.dictionaries(function_names, st.dictionaries(argument_names, json_values),
                                           min_size=1, max_size=1), max_size=3)
categories = st.sampled_from(["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
                              "live_simple", "live_multiple", "live_parallel", "live_irrelevance",
                              "live_relevance", "made_up"])


def assert_is_a_verdict(result):
    assert isinstance(result, Verdict)
    assert result.kind in KINDS
    assert result.error_type != INTERNAL_ERROR, result.errors  # every failure is handled on purpose
    assert result.valid == (result.error_type is None)
    json.dumps(result.to_dict())


@settings(max_examples=150, deadline=None)
@given(model_calls=calls_in_format | json_values, category=categories)
def test_check_never_raises_on_any_output(model_calls, category):
    assert_is_a_verdict(check([WEATHER, TIME], model_calls, GOLD, category))


@settings(max_examples=100, deadline=None)
@given(functions=json_values, gold=json_values, model_calls=calls_in_format, category=categories)
def test_check_never_raises_on_any_sample(functions, gold, model_calls, category):
    assert_is_a_verdict(check(functions, model_calls, gold, category))


@settings(max_examples=100, deadline=None)
@given(properties=st.dictionaries(argument_names, json_values, max_size=3),
       answers=st.dictionaries(argument_names, st.lists(json_values, max_size=3), max_size=3),
       arguments=st.dictionaries(argument_names, json_values, max_size=3))
def test_check_never_raises_on_any_schema(properties, answers, arguments):
    functions = [{"name": "f", "parameters": {"type": "dict", "properties": properties, "required": []}}]
    assert_is_a_verdict(check(functions, [{"f": arguments}], [{"f": answers}], "simple_python"))


def test_extreme_values_are_judged():
    deep = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    for value in (deep, "x" * 1_000_000, 10**5000, math.nan, -math.inf, {"k": deep}, [deep]):
        for spec in ({"type": "string"}, {"type": "float"}, {"type": "array", "items": {"type": "string"}},
                     {"type": "dict"}, {"type": "any"}):
            result = check([function("f", x=spec)], [{"f": {"x": value}}], [{"f": {"x": ["a", ""]}}], "simple")
            assert_is_a_verdict(result)
            assert not result.valid
    loop: list = []
    loop.append(loop)  # a list that contains itself
    assert_is_a_verdict(check([WEATHER], [{"get_weather": {"city": loop}}], GOLD, "simple"))
