"""Tool edits the query model writes after its request: parsed (never executed), applied to the
tool list and the gold calls alike, and refused by the referee, each way by its own reason."""

from __future__ import annotations

import json
import random

import pytest

from toolduel.referee.outcome import adversarial_sample, gate, pool_record, score_queries
from toolduel.prompts import EDIT_MOVE_KEY, TOOL_CANDIDATES_KEY
from toolduel.referee.tool_grammar import (
    EditError,
    apply_edits,
    parse_edit,
    split_completion,
)
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.functions import functions_by_name
from toolduel.world.generator import generate_samples
from toolduel.world.lexicon import world_lexicon
from toolduel.world.tool_edits import TOOL_MOVES, edit_tools, tool_candidates, written_edits

WORLD = world_lexicon()


def _types(reasons: list[str]) -> set[str]:
    return {reason.split(":", 1)[0] for reason in reasons}


def _tool(name: str) -> Tool:
    return functions_by_name()[name].tool()


@pytest.fixture
def seed() -> Sample:
    """Convert 12.5 km to mi, offered beside a weather tool, with two look-alikes it may add, asked
    for a tool move (``--tool-edits written``)."""
    tools = [_tool("get_current_weather"), _tool("convert_length")]
    call = Call("convert_length", {"value": 12.5, "from_unit": "km", "to_unit": "mi"})
    candidates = [_tool("convert_temperature").to_openai(), _tool("convert_weight").to_openai()]
    return Sample(id="s", tools=tools, messages=[{"role": "user", "content": "Convert 12.5 km to mi."}],
                  gold=[GoldCall.from_call(call, tools[1])],
                  meta={"source": "world", EDIT_MOVE_KEY: "masked_names", TOOL_CANDIDATES_KEY: candidates})


REQUEST = "How many miles is 12.5 km?"


def test_a_completion_parts_its_request_from_its_edits():
    assert split_completion(REQUEST) == (REQUEST, [])
    assert split_completion(f"{REQUEST}\nTool edits:\nrename convert_length to measure; move measure to first") \
        == (REQUEST, ["rename convert_length to measure", "move measure to first"])
    assert split_completion(f"{REQUEST}\ntool edits: add convert_weight.") == (REQUEST, ["add convert_weight."])


@pytest.mark.parametrize("line", ["delete convert_length", "rename convert_length", "move x to the middle",
                                  "rename convert_length to two words", "import os; os.system('x')", "__import__"])
def test_anything_but_the_grammar_is_unreadable(line):
    with pytest.raises(EditError) as caught:
        parse_edit(line)
    assert caught.value.reason == "tool_edit_unreadable"


def test_edits_apply_to_the_tools_and_the_gold_calls_alike(seed):
    edits = [parse_edit(line) for line in ("rename convert_length to measure", "rename measure.value to amount",
                                           "describe measure as Convert a length from one unit to another",
                                           "add convert_weight", "move measure to last")]
    tools, gold = apply_edits(seed.tools, seed.gold, edits, [_tool("convert_weight")])
    assert [t.name for t in tools] == ["get_current_weather", "convert_weight", "measure"]
    assert set(tools[2].properties) == {"amount", "from_unit", "to_unit"}
    assert tools[2].description.startswith("Convert a length from one unit to another. Parameters: amount: ")
    assert gold[0].name == "measure" and gold[0].arguments["amount"] == [12.5]
    assert seed.tools[1].name == "convert_length"  # the seed's own list is left as it was


def test_the_fc_model_answers_the_request_against_the_edited_list(seed):
    completion = f"{REQUEST}\nTool edits:\nrename convert_length to tool_7\nadd convert_weight"
    (outcome,) = gate([seed], [completion], WORLD)
    assert outcome.valid, outcome.reasons
    answered = adversarial_sample(seed, completion)
    assert answered.query == REQUEST and "Tool edits" not in json.dumps(answered.messages)
    assert [t.name for t in answered.tools] == ["get_current_weather", "tool_7", "convert_weight"]
    assert answered.gold[0].name == "tool_7"
    own = adversarial_sample(seed, completion, edited=False)
    assert [t.name for t in own.tools] == ["get_current_weather", "convert_length"] and own.query == REQUEST


@pytest.mark.parametrize("edit, reason", [
    ("rename convert_lenght to tool_7", "tool_edit_unknown"),            # no such function
    ("add search_flights", "tool_edit_unknown"),                         # not a candidate of this request
    ("rename convert_length.value to from_unit", "tool_edit_misleading"),  # another parameter's name
    ("rename convert_length.value to target", "tool_edit_misleading"),   # a role word of a pair
    ("rename convert_length to get_current_weather", "tool_edit_misleading"),  # another tool's name
    ("rename convert_length to weight_converter", "tool_edit_misleading"),  # a look-alike's it may add
    ("rename convert_length.value to from_value", "tool_edit_misleading"),  # "from" it did not have
    ("describe convert_length as Get the current weather", "tool_edit_off_meaning"),  # another meaning
    ("describe convert_length as Convert a length or get the weather forecast", "tool_edit_off_meaning"),
    ("describe convert_length as Convert a length or a weight", "tool_edit_off_meaning"),  # one it may add
    ("rename convert_length to a;b", "tool_edit_unreadable"),
    ("describe convert_length as " + "very " * 60 + "long", "tool_edit_unreadable"),
])
def test_an_edit_that_could_break_the_oracle_is_refused_by_its_reason(seed, edit, reason):
    (outcome,) = gate([seed], [f"{REQUEST}\nTool edits:\n{edit}"], WORLD)
    assert not outcome.valid and _types(outcome.reasons) == {reason}, outcome.reasons


def test_a_look_alike_that_serves_the_request_is_refused(seed):
    length = _tool("convert_length")
    twin = Tool("length_converter", length.description, length.parameters)
    seed.meta[TOOL_CANDIDATES_KEY].append(twin.to_openai())
    (outcome,) = gate([seed], [f"{REQUEST}\nTool edits: add length_converter"], WORLD)
    assert not outcome.valid and _types(outcome.reasons) == {"tool_edit_distractor_serves"}


def test_edits_are_read_only_where_the_query_model_was_asked_for_a_move(seed):
    completion = f"{REQUEST}\nTool edits:\nrename convert_length to tool_7"
    del seed.meta[EDIT_MOVE_KEY]  # --tool-edits drawn, or --attack-surface query: the list stays as it is
    (outcome,) = gate([seed], [completion], WORLD)
    assert not outcome.valid and "leak" in _types(outcome.reasons)  # all of it is the request
    assert adversarial_sample(seed, completion).tools == seed.tools


def test_a_request_that_names_a_function_in_its_edits_only_is_no_leak(seed):
    # the edits name functions by necessity; the request is what the leak rule reads
    (outcome,) = gate([seed], [f"{REQUEST}\nTool edits: move convert_length to first"], WORLD)
    assert outcome.valid, outcome.reasons
    (leaky,) = gate([seed], ["Call convert_length on 12.5 km to mi\nTool edits: move convert_length to first"], WORLD)
    assert not leaky.valid and "leak" in _types(leaky.reasons)


class _OldNames:
    """Answers with the gold call under its old name: right on the seed's own list only."""

    name, max_concurrency = "old names", 4

    def __init__(self, call: Call):
        self.call, self.requests = call, 0

    def generate(self, conversations, tools, config=None):
        from toolduel.models.base import Generation

        self.requests += len(conversations)
        text = '<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>' % (
            self.call.name, json.dumps(self.call.arguments))
        return [Generation(text) for _ in conversations]


def test_a_written_rename_that_fools_the_fc_model_is_an_answerable_weakness(seed):
    fc = _OldNames(seed.gold[0].canonical_call())
    (outcome,) = score_queries(fc, [seed], [f"{REQUEST}\nTool edits: rename convert_length to tool_7"], k=2,
                               lexicon=WORLD)
    assert outcome.fc_success == 0.0 and outcome.reference_solved and outcome.weakness(floor=True)
    assert fc.requests == 4 and outcome.fc_answers == 4  # k on the edited list, k on the seed's own
    record = pool_record("r", 1, seed, outcome, "query model", "FC model")  # what the pool keeps of it
    assert (record["query"], record["tool_edits"]) == (REQUEST, ["rename convert_length to tool_7"])
    assert record["fc_answers"] == 4 and record["sample"]["gold"][0] == {"tool_7": seed.gold[0].arguments}


@pytest.mark.parametrize("move", TOOL_MOVES)
def test_the_edits_the_warm_start_teaches_for_each_move_pass_the_referee(move):
    rng, checked = random.Random(0), 0
    for sample in generate_samples(60, seed=5, kinds=("one_call", "two_call"), phrasings=("plain",)):
        lines = written_edits(sample, move, rng)
        if lines is None:
            continue
        sample.meta[TOOL_CANDIDATES_KEY] = [t.to_openai() for t in tool_candidates(sample)]
        sample.meta[EDIT_MOVE_KEY] = move
        completion = sample.query + "\nTool edits:\n" + "\n".join(lines)
        (outcome,) = gate([sample], [completion], WORLD)
        assert outcome.valid, (lines, outcome.reasons)
        assert adversarial_sample(sample, completion).tools != sample.tools
        checked += 1
    assert checked >= 20


def test_a_move_acts_where_written_exactly_where_the_world_applies_it():
    # so that the drawn and the written arms of a comparison meet the same specs
    rng = random.Random(1)
    for sample in generate_samples(300, seed=8, kinds=("one_call", "two_call"), phrasings=("plain",)):
        for move in TOOL_MOVES:
            acts = written_edits(sample, move, rng) is not None
            assert acts == (edit_tools(sample, move, rng) is not None), (move, sample.query)
