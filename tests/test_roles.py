"""Role-aware validity: a value said in another parameter's role ("12.5 mi to km" for the gold call
km -> mi) is rejected as ``role_swapped``; the same values in their own roles pass."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolduel.referee.roles import named_pairs
from toolduel.referee.validity import Lexicon, check_query
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.catalog import sample_value
from toolduel.world.functions import functions_by_name
from toolduel.world.generator import render_query, sample_arguments, split_of
from toolduel.world.lexicon import swappable_functions, world_lexicon
from toolduel.world.phrasing import PHRASINGS

WORLD = world_lexicon()
SWAPPABLE = swappable_functions()


def world_sample(*calls: Call, query: str = "seed") -> Sample:
    tools = {call.name: functions_by_name()[call.name].tool() for call in calls}
    return Sample(id="s", tools=list(tools.values()), messages=[{"role": "user", "content": query}],
                  gold=[GoldCall.from_call(call, tools[call.name]) for call in calls], meta={"source": "test"})


def swapped(query: str, sample: Sample, lexicon: Lexicon = WORLD) -> bool:
    return any(reason.startswith("role_swapped:") for reason in check_query(query, sample, lexicon).reasons)


def test_the_world_has_the_swappable_pairs_the_referee_must_watch():
    assert SWAPPABLE["convert_length"] == ["from_unit", "to_unit"]
    assert SWAPPABLE["convert_currency"] == ["from_currency", "to_currency"]
    assert SWAPPABLE["count_days_between"] == ["end_date", "start_date"]
    assert SWAPPABLE["search_flights"] == ["destination", "origin"]
    assert SWAPPABLE["book_hotel"] == ["guests", "nights"]  # both small integers
    assert "get_current_weather" not in SWAPPABLE and "send_message" not in SWAPPABLE  # nothing to swap


@pytest.mark.parametrize("name", sorted(SWAPPABLE))
@pytest.mark.parametrize("phrasing", PHRASINGS)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_every_swappable_pair_is_caught_both_ways_and_never_when_in_place(name, phrasing, seed):
    """The world renders a request for the gold values, and for the same request with two of
    them exchanged: the first is valid, the second always ``role_swapped``."""
    function, rng = functions_by_name()[name], random.Random(seed)
    args = sample_arguments(function, rng)
    for param in function.params:  # every parameter of the group stated, so that each pair can swap
        if param.name in SWAPPABLE[name]:
            args.setdefault(param.name, sample_value(param.pool, param.type, rng))
    pairs = [(a, b) for a, b in itertools.permutations(SWAPPABLE[name], 2) if args[a] != args[b]]
    if not pairs:
        return
    one, other = rng.choice(pairs)
    exchanged = args | {one: args[other], other: args[one]}
    render_seed = rng.random()
    in_place = render_query([Call(name, args)], phrasing, random.Random(render_seed))
    out_of_place = render_query([Call(name, exchanged)], phrasing, random.Random(render_seed))
    if in_place is None or out_of_place is None:
        return  # the phrasing cannot apply (no value with an indirect form, or words that run numbers together)
    gold = world_sample(Call(name, args), query=in_place)
    assert check_query(in_place, gold, WORLD).valid, in_place
    assert swapped(out_of_place, gold), (out_of_place, check_query(out_of_place, gold, WORLD).reasons)


LENGTH = world_sample(Call("convert_length", {"value": 12.5, "from_unit": "km", "to_unit": "mi"}))
CURRENCY = world_sample(Call("convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}))
DAYS = world_sample(Call("count_days_between", {"start_date": "2025-03-01", "end_date": "2025-06-01"}))
FLIGHTS = world_sample(Call("search_flights", {"origin": "Paris", "destination": "Tokyo", "date": "2025-03-01"}))
HOTEL = world_sample(Call("book_hotel", {"city": "Paris", "check_in": "2025-03-01", "nights": 3, "guests": 2}))
TIP = world_sample(Call("calculate_tip", {"bill_amount": 80, "tip_percent": 15, "split": 4}))
SUM = world_sample(Call("add_numbers", {"a": 317, "b": 317.5}))
SUM_OF_HUNDREDS = world_sample(Call("add_numbers", {"a": 100, "b": 125}))


@pytest.mark.parametrize("sample, query", [
    (LENGTH, "Convert 12.5 km to miles"),
    (LENGTH, "How many miles is 12.5 km"),             # "how many" names the unit converted to
    (LENGTH, "What's 12.5 km in mi"),                  # "in" after a unit: the one converted to
    (LENGTH, "How long is 12.5 in km expressed in mi"),  # "12.5 in km": the unit of the number
    (LENGTH, "In miles, how long is 12.5 km?"),
    (LENGTH, "In km, convert the length 12.5 to mi"),  # "in" opening a request names no role
    (LENGTH, "What is the mi equivalent of 12.5 km"),
    (CURRENCY, "How many euros do I get for 100 dollars"),
    (CURRENCY, "What would 100 USD be in euros"),
    (DAYS, "Count the days from March 1st, 2025 until June 1st, 2025"),
    (DAYS, "How many days is it to June 1st, 2025 from March 1st, 2025"),  # roles, not order
    (FLIGHTS, "I'm in Paris and need flights to Tokyo on 2025-03-01"),
    (FLIGHTS, "Get me a plane out of Paris headed for Tokyo on 2025-03-01"),
    (HOTEL, "Reserve a hotel room in Paris for two people, three nights, from March 1st, 2025"),
    (TIP, "15% tip on $80 for 4 people"),
    # a value said inside a longer number is not said at all: 317 in "three hundred seventeen and
    # a half", 100 in "one hundred and twenty-five"
    (SUM, "Compute the sum of 317 and three hundred seventeen and a half."),
    (SUM_OF_HUNDREDS, "Add 100 and one hundred and twenty-five"),
])
def test_values_in_their_roles_are_valid(sample, query):
    verdict = check_query(query, sample, WORLD)
    assert verdict.valid, verdict.reasons


@pytest.mark.parametrize("sample, query, said_as", [
    (LENGTH, "Convert 12.5 miles to km", "to_unit"),
    (LENGTH, "How many km is 12.5 miles", "to_unit"),
    (LENGTH, "Express 12.5 miles as km", "to_unit"),
    (CURRENCY, "Exchange 100 EUR into USD", "to_currency"),
    (CURRENCY, "What would 100 euros be in USD", "to_currency"),
    (LENGTH, "What is 12.5 mi in km", "to_unit"),  # "in" after a unit: the one converted to
    (DAYS, "How many days between 2025-06-01 and 2025-03-01", "end_date"),
    (FLIGHTS, "I want to fly to Paris, leaving from Tokyo on March 1st, 2025", "destination"),
    (HOTEL, "Hotel in Paris from 2025-03-01: 3 adults, 2 nights", "guests"),
    (TIP, "Calculate the tip on a 80 dollar bill at 4 percent split 15 ways", "split"),
    (SUM, "Compute the sum of three hundred seventeen and a half and 317", "b"),
    (SUM_OF_HUNDREDS, "Add one hundred and twenty-five and 100", "b"),
])
def test_values_in_each_others_roles_are_role_swapped(sample, query, said_as):
    verdict = check_query(query, sample, WORLD)
    assert not verdict.valid and verdict.error_type == "role_swapped", verdict.reasons
    assert f"is said as {said_as}" in verdict.reasons[0]


def test_a_value_said_with_no_role_word_is_left_to_the_judge():
    assert check_query("12.5 km -> mi, convert the length", LENGTH, WORLD).valid


def test_the_same_function_twice_with_the_roles_reversed_is_not_a_swap():
    # km is from_unit in one call and to_unit in the other: said as to_unit, it is in a role it has
    sample = world_sample(Call("convert_length", {"value": 12.5, "from_unit": "km", "to_unit": "mi"}),
                          Call("convert_length", {"value": 3.0, "from_unit": "mi", "to_unit": "km"}))
    assert check_query("Convert 12.5 km to mi, and also the length 3 mi to km", sample, WORLD).valid


def test_pairs_named_as_one_are_checked_for_any_tool_without_a_lexicon():
    tool = Tool("get_travel_time", "Travel time between two places", {
        "type": "object", "required": ["start_location", "end_location"],
        "properties": {"start_location": {"type": "string"}, "end_location": {"type": "string"}}})
    assert set(named_pairs(tool)) == {"start_location", "end_location"}
    sample = Sample(id="b", tools=[tool], messages=[{"role": "user", "content": "seed"}],
                    gold=[GoldCall.from_call(Call("get_travel_time", {"start_location": "Boston",
                                                                      "end_location": "New York"}), tool)])
    assert check_query("How long does it take to drive from Boston to New York?", sample).valid
    assert check_query("How long does it take to drive from New York to Boston?", sample).error_type == "role_swapped"
    other = Tool("send_email", "", {"type": "object", "properties": {"to": {"type": "string"},
                                                                      "subject": {"type": "string"}}})
    assert named_pairs(other) == {}  # "to" alone is no pair


def test_a_rewrite_of_a_world_seed_that_is_held_out_text_is_refused():
    query = next(q for q in (f"Convert 12.5 km to mi, number {n}" for n in range(100)) if split_of(q) == "heldout")
    world_seed = Sample(id="w", tools=LENGTH.tools, messages=LENGTH.messages, gold=LENGTH.gold,
                        meta={"source": "world"})
    verdict = check_query(query, world_seed, WORLD)
    assert verdict.reasons == ["heldout: the query is held-out text of an evaluation set (never trained on)"]
    assert check_query(query, LENGTH, WORLD).valid  # a seed from elsewhere: the world's split says nothing
