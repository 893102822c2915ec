"""The rule validity check: is a generated query still asking for the gold calls?"""

from __future__ import annotations

import dataclasses

import pytest

from toolduel.referee.validity import Lexicon, ValidityVerdict, is_grounded, normalize
from toolduel.referee.validity import check_query as rule_check
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.lexicon import world_lexicon

WORLD = world_lexicon()


def check_query(query, sample, lexicon=WORLD, **options):
    """The rule check with the world's lexicon (surface forms, intent words), as the programs run it."""
    return rule_check(query, sample, lexicon, **options)

ADD_TO_CART = Tool("add_to_cart", "Add a product to the cart", {
    "type": "object", "required": ["product", "quantity"],
    "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"},
                   "gift_wrap": {"type": "boolean", "default": False},
                   "note": {"type": "string", "default": "none"}}})
CONVERT = Tool("convert_length", "Convert a length", {
    "type": "object", "required": ["value", "from_unit", "to_unit"],
    "properties": {"value": {"type": "number"}, "from_unit": {"type": "string", "enum": ["km", "mi"]},
                   "to_unit": {"type": "string", "enum": ["km", "mi"]}}})


def sample_of(*calls: Call, tools=(ADD_TO_CART, CONVERT)) -> Sample:
    by_name = {t.name: t for t in tools}
    return Sample(id="s", tools=list(tools), messages=[{"role": "user", "content": "seed"}],
                  gold=[GoldCall.from_call(c, by_name[c.name]) for c in calls])


CART = sample_of(Call("add_to_cart", {"product": "yoga mat", "quantity": 12, "gift_wrap": True}))
LENGTH = sample_of(Call("convert_length", {"value": 12.5, "from_unit": "km", "to_unit": "mi"}))


@pytest.mark.parametrize("query", [
    "Add 12 yoga mats to my cart",            # plain (and a plural still holds the words)
    "Put a dozen Yoga Mat in the cart",       # idiom, case
    "add twelve of the yoga mat please",      # number word
    "Cart: yoga mat, qty 12.0",               # the same number written as a float
    "I'd like the YOGA MAT — 12 of them!",    # punctuation around values
])
def test_grounded_surface_forms_are_accepted(query):
    verdict = check_query(query, CART)
    assert verdict == ValidityVerdict(True, []), verdict.reasons


@pytest.mark.parametrize("query", [
    "Convert twelve and a half kilometers to miles",
    "How many mi is 12.5 km?",
    "12.50 kilometres in miles please",
])
def test_units_and_halves_are_grounded(query):
    assert check_query(query, LENGTH).valid


def test_a_dropped_value_is_rejected_and_named():
    verdict = check_query("Add some yoga mats to my cart", CART)
    assert not verdict.valid
    assert verdict.reasons == ["ungrounded: add_to_cart.quantity=12"]
    assert verdict.error_type == "ungrounded"


def test_a_changed_number_is_not_grounded_by_a_prefix_or_a_longer_number():
    assert not check_query("Add 1 yoga mat, then 2 more", CART).valid  # "1" and "2" are not 12
    assert not check_query("Add 120 yoga mats", CART).valid
    assert not check_query("Convert 12 km to mi", LENGTH).valid  # 12 is not 12.5
    assert not check_query("Convert 12.55 km to mi", LENGTH).valid


def test_a_number_said_inside_a_longer_one_in_words_is_not_said():
    five = sample_of(Call("add_to_cart", {"product": "yoga mat", "quantity": 5}))
    assert not check_query("Add twenty-five yoga mats", five).valid  # 25 says no 5
    assert check_query("Add five yoga mats, twenty-five in all", five).valid
    hundred = sample_of(Call("add_to_cart", {"product": "yoga mat", "quantity": 100}))
    assert not check_query("Add one hundred and twelve yoga mats", hundred).valid  # 112
    assert check_query("Add one hundred yoga mats and twelve more", hundred).valid
    assert not check_query("Add twelve and a half yoga mats", CART).valid  # 12.5
    assert check_query("Add twelve, and a half-price yoga mat", CART).valid  # a comma ends a number


def test_a_number_with_a_leading_zero_is_not_the_number():
    # "0488.5" reads as an identifier or a typo, not as 488.5 (a query the attack wrote).
    assert not check_query("Convert 012.5 km to mi", LENGTH).valid
    assert not check_query("Add 012 yoga mats", CART).valid
    half = sample_of(Call("convert_length", {"value": 0.5, "from_unit": "km", "to_unit": "mi"}))
    assert check_query("Convert 0.50 km to mi", half, Lexicon()).valid  # read as the number 0.5, not by a form


def test_numbers_in_a_comma_list_are_each_grounded():
    # BFCL writes "points A(3,4)" and "the factorial of 5,10 and 15": a list, not 34 or 510.
    points = sample_of(Call("convert_length", {"value": 3, "from_unit": "km", "to_unit": "mi"}))
    assert check_query("Convert 3,4 km to mi", points).valid
    assert check_query("Convert 1,000 km to mi", sample_of(
        Call("convert_length", {"value": 1000, "from_unit": "km", "to_unit": "mi"}))).valid


def test_function_names_and_call_syntax_leak():
    leaked = check_query("Please call add_to_cart for 12 yoga mats", CART)
    assert not leaked.valid and leaked.error_type == "leak"
    assert "leak: function name 'add_to_cart'" in leaked.reasons
    assert not check_query('<tool_call>{"name": "x"}</tool_call> 12 yoga mat', CART).valid
    assert not check_query("add_to_cart(product='yoga mat', quantity=12)", CART).valid
    # a name that is an ordinary word is no leak by itself
    word_tool = Tool("translate", "Translate", {"type": "object", "properties": {}, "required": []})
    assert check_query("translate this for me", sample_of(tools=(word_tool,))).valid


def test_length_bounds_and_empty_or_hostile_input():
    assert check_query("", CART).reasons == ["empty: no query text"]
    assert check_query(None, CART).error_type == "empty"  # type: ignore[arg-type]
    huge = "12 yoga mat " * 10_000
    verdict = check_query(huge, CART)
    assert not verdict.valid and verdict.error_type == "length"
    assert check_query("12", sample_of()).error_type == "length"


def test_a_run_on_that_asks_for_more_than_the_seed_is_too_long():
    seed = Sample(id="s", tools=CART.tools, messages=[{"role": "user", "content": "Add 12 yoga mats to my cart."}],
                  gold=CART.gold)
    assert check_query("Hi! Could you please add 12 yoga mats to my cart? Thanks a lot, you're the best.", seed).valid
    run_on = ("Add 12 yoga mats to my cart, then convert 12 km to mi, look up the weather in Oslo, send Bob a "
              "message saying hello and book me a table for two at eight tonight")
    verdict = check_query(run_on, seed)
    assert verdict.reasons == [f"length: {len(run_on)} characters, {len(run_on) - 28} more than the seed's "
                               "(at most 120 more)"]
    assert check_query(run_on, seed, max_growth=None).valid


def test_a_request_said_twice_is_a_second_request():
    seed = Sample(id="s", tools=CART.tools, messages=[{"role": "user", "content": "Add 12 yoga mats to my cart."}],
                  gold=CART.gold)
    verdict = check_query("Add 12 yoga mats to my cart, add 12 yoga mats.", seed)
    assert verdict.reasons == ["repeated: 'add 12 yoga' 2 times (the seed asks for it at most 1)"]
    two = sample_of(Call("convert_length", {"value": 5, "from_unit": "km", "to_unit": "mi"}),
                    Call("convert_length", {"value": 8, "from_unit": "km", "to_unit": "mi"}))
    assert check_query("Convert length 5 km to mi and convert length 8 km to mi", two).valid  # two calls
    assert check_query("Convert 12.5 km per hour, that is km per hour, to mi", LENGTH).valid  # short words


def test_optional_and_boolean_values_need_no_grounding():
    # gift_wrap=True is a boolean (no surface form), note may be omitted
    assert check_query("12 yoga mats in my cart", CART).valid


def test_any_possible_answer_grounds_the_argument():
    gold = GoldCall("add_to_cart", {"product": ["yoga mat", "exercise mat"], "quantity": [12]})
    sample = Sample(id="s", tools=[ADD_TO_CART], messages=[], gold=[gold])
    assert check_query("Put 12 exercise mats in the cart", sample).valid


def test_two_calls_need_both_grounded_and_no_call_needs_only_form():
    both = sample_of(Call("add_to_cart", {"product": "yoga mat", "quantity": 12}),
                     Call("convert_length", {"value": 3, "from_unit": "km", "to_unit": "mi"}))
    assert check_query("Add 12 yoga mats, then convert 3 km to miles", both).valid
    verdict = check_query("Add 12 yoga mats", both)
    assert [r.split("=")[0].split(" (")[0] for r in verdict.reasons] == [
        "off_intent: nothing names convert_length", "ungrounded: convert_length.value",
        "ungrounded: convert_length.from_unit", "ungrounded: convert_length.to_unit"]
    assert check_query("Tell me a joke", sample_of()).valid


def test_custom_surface_forms_extend_or_replace_the_table():
    gold = Sample(id="s", tools=[ADD_TO_CART], messages=[],
                  gold=[GoldCall("add_to_cart", {"product": ["yoga mat"], "quantity": [144]})])
    assert not check_query("add a gross of yoga mats", gold).valid
    assert check_query("add a gross of yoga mats", gold, WORLD.with_forms({"144": ["a gross"]})).valid
    assert check_query("add a gross of yoga mats", gold,
                       dataclasses.replace(WORLD, surface_forms=lambda v: {144: ["a gross"]}.get(v, [str(v)]))).valid


def test_without_a_lexicon_values_must_be_written_as_they_are_and_intent_is_unchecked():
    assert check_query("Add a dozen yoga mats to my cart", CART).valid
    assert check_query("Add a dozen yoga mats to my cart", CART, Lexicon()).reasons == [
        "ungrounded: add_to_cart.quantity=12"]
    assert check_query("Order 12 yoga mat now", CART, Lexicon()).valid  # "order" is no word of add_to_cart's
    assert check_query("Order 12 yoga mat now", CART).error_type == "off_intent"


def test_dates_and_arrays_are_grounded_through_their_forms():
    assert is_grounded("2025-05-12", "book it for May 12th, 2025", WORLD.surface_forms)
    assert not is_grounded("2025-05-12", "book it for May 12th", WORLD.surface_forms)  # the year is missing
    assert is_grounded(["Alice", "Bob"], "tell alice and bob")
    assert not is_grounded(["Alice", "Bob"], "tell alice")
    assert normalize("  Hello,\tWORLD_x ") == "hello, world x"


VACUUM = Tool("start_vacuum", "Start the robot vacuum", {
    "type": "object", "properties": {"room": {"type": "string"}}})


@pytest.mark.parametrize("query", [
    "Run the robot vacuum in the bedroom",
    "Could you tidy up the bedroom floors?",       # a paraphrase the world knows
    "RUN the robott vaccum in the bedroom",        # typos in the intent words
])
def test_a_query_naming_the_function_passes_the_intent_check(query):
    sample = sample_of(Call("start_vacuum", {"room": "bedroom"}), tools=(VACUUM,))
    assert check_query(query, sample).valid, check_query(query, sample).reasons


def test_a_grounded_query_for_another_function_is_off_intent():
    """Every value is there, but the request is for the lights, not the vacuum."""
    sample = sample_of(Call("start_vacuum", {"room": "bedroom"}), tools=(VACUUM,))
    verdict = check_query("Turn on the lights in the bedroom.", sample)
    assert not verdict.valid and verdict.error_type == "off_intent"
    assert verdict.reasons[0].startswith("off_intent: nothing names start_vacuum")


def test_units_name_a_conversion_and_unknown_functions_are_not_intent_checked():
    assert check_query("12.5 km in mi?", LENGTH).valid
    foreign = Tool("lookup_tide", "Tide times", {"type": "object", "properties": {"port": {"type": "string"}}})
    sample = sample_of(Call("lookup_tide", {"port": "Brest"}), tools=(foreign,))
    assert check_query("Brest, please", sample).valid  # not a world function: no words to require
    assert not check_query("Brest, please", sample, dataclasses.replace(WORLD, intent_words=lambda name: {"tide"})).valid
