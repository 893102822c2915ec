"""The referee's check of an edited tool list: every move of the world keeps the oracle, and each
way of breaking it is rejected by its own reason."""

from __future__ import annotations

import copy
import json
import random

import pytest

from toolduel.referee.outcome import ANSWER_GOLD_KEY, ANSWER_TOOLS_KEY, TOOL_MOVE_KEY, gate
from toolduel.referee.tool_list import check_tool_edit, described_purpose
from toolduel.schema import GoldCall, Sample, Tool
from toolduel.world.functions import functions_by_name
from toolduel.world.generator import generate_samples
from toolduel.world.lexicon import world_lexicon, world_purpose
from toolduel.world.tool_edits import TOOL_MOVES, edit_tools


def _types(reasons: list[str]) -> set[str]:
    return {reason.split(":", 1)[0] for reason in reasons}


@pytest.fixture(scope="module")
def seed() -> Sample:
    """A plain one-call world request whose function takes two or more arguments."""
    return next(s for s in generate_samples(40, seed=3, kinds=("one_call",), phrasings=("plain",))
                if len(s.gold[0].arguments) >= 2)


@pytest.mark.parametrize("purpose", [world_purpose, described_purpose], ids=["world", "described"])
@pytest.mark.parametrize("move", TOOL_MOVES)
def test_every_move_of_the_world_keeps_the_oracle(move, purpose):
    rng, checked = random.Random(0), 0
    for sample in generate_samples(80, seed=5, phrasings=("plain",)):
        edited = edit_tools(sample, move, rng)
        if edited is not None:
            assert check_tool_edit(sample.tools, sample.gold, edited.tools, edited.gold, purpose) == []
            checked += 1
    assert checked >= 30


def _copy_of(tool: Tool, name: str, description: str | None = None) -> Tool:
    return Tool(name=name, description=tool.description if description is None else description,
                parameters=copy.deepcopy(tool.parameters))


def _break(seed: Sample, how: str) -> tuple[list[Tool], list[GoldCall]]:
    """``seed``'s tools and gold, edited in a way that breaks the oracle."""
    tools, gold = list(seed.tools), copy.deepcopy(seed.gold)
    gold_tool = next(t for t in tools if t.name == gold[0].name)
    if how == "copy_distractor":  # the gold function again, under a look-alike name
        tools.append(_copy_of(gold_tool, gold_tool.name + "_v2"))
    elif how == "reworded_copy":  # ... and said in one of its paraphrase intents
        tools.append(_copy_of(gold_tool, "lookup", functions_by_name()[gold_tool.name].alt_intents[0]))
    elif how == "tools_renamed_only":
        tools = [_copy_of(t, "tool_11") if t is gold_tool else t for t in tools]
    elif how == "gold_renamed_only":
        gold[0].name = "tool_11"
    elif how == "parameter_renamed_only":
        (first, values), *rest = gold[0].arguments.items()
        gold[0].arguments = {"arg_1": values, **dict(rest)}
    elif how == "value_changed":
        param = next(iter(gold[0].arguments))
        gold[0].arguments[param] = ["something else"]
    elif how == "type_changed":
        retyped = copy.deepcopy(gold_tool.parameters)
        param = next(iter(gold[0].arguments))
        retyped["properties"][param] = {"type": "boolean" if retyped["properties"][param].get("type") != "boolean"
                                        else "string"}
        tools = [Tool(name=t.name, description=t.description, parameters=retyped) if t is gold_tool else t
                 for t in tools]
    elif how == "duplicate_name":
        other = next(t for t in functions_by_name().values() if t.name != gold_tool.name).tool()
        tools.append(_copy_of(other, tools[-1].name))
    return tools, gold


@pytest.mark.parametrize("how, reason", [
    ("copy_distractor", "tool_edit_distractor_serves"),
    ("reworded_copy", "tool_edit_distractor_serves"),
    ("tools_renamed_only", "tool_edit_unmatched"),
    ("gold_renamed_only", "tool_edit_unmatched"),
    ("parameter_renamed_only", "tool_edit_unmatched"),
    ("value_changed", "tool_edit_changed_gold"),
    ("type_changed", "tool_edit_changed_schema"),
    ("duplicate_name", "tool_edit_duplicate"),
])
def test_an_edit_that_breaks_the_oracle_is_rejected_by_its_reason(seed, how, reason):
    tools, gold = _break(seed, how)
    assert reason in _types(check_tool_edit(seed.tools, seed.gold, tools, gold, world_purpose))


def test_a_copy_said_in_other_words_is_caught_only_by_a_purpose_that_knows_the_world(seed):
    tools, gold = _break(seed, "reworded_copy")
    assert "tool_edit_distractor_serves" not in _types(check_tool_edit(seed.tools, seed.gold, tools, gold))
    tools, gold = _break(seed, "copy_distractor")  # the same description: any purpose sees it
    assert "tool_edit_distractor_serves" in _types(check_tool_edit(seed.tools, seed.gold, tools, gold))


def test_the_gate_rejects_a_broken_edit_and_passes_a_kept_one(seed):
    lexicon = world_lexicon()
    kept = edit_tools(seed, "masked_names", random.Random(0))
    broken_tools, broken_gold = _break(seed, "tools_renamed_only")

    def carrying(tools, gold) -> Sample:
        return Sample.from_dict(seed.to_dict() | {"meta": {**seed.meta, TOOL_MOVE_KEY: "masked_names",
                                                           ANSWER_TOOLS_KEY: [t.to_openai() for t in tools],
                                                           ANSWER_GOLD_KEY: [g.to_bfcl() for g in gold]}})

    plain, good, bad, unreadable = gate(
        [seed, carrying(kept.tools, kept.gold), carrying(broken_tools, broken_gold),
         Sample.from_dict(seed.to_dict() | {"meta": {**seed.meta, ANSWER_TOOLS_KEY: ["not a tool"],
                                                     ANSWER_GOLD_KEY: []}})],
        [seed.query] * 4, lexicon)
    assert plain.valid and good.valid and good.tool_move == "masked_names"
    assert not bad.valid and _types(bad.reasons) == {"tool_edit_unmatched"}
    assert not unreadable.valid and _types(unreadable.reasons) == {"tool_edit_unreadable"}


class _NamesFC:
    """Answers each request with the gold call under the original name: right on the seed's own
    list, wrong once the names are masked. Counts the requests."""

    name, max_concurrency = "names", 4

    def __init__(self, seed: Sample, right: bool = True):
        self.call, self.right, self.requests = seed.gold[0].canonical_call(), right, 0

    def generate(self, conversations, tools, config=None):
        from toolduel.models.base import Generation

        self.requests += len(conversations)
        name = self.call.name if self.right else "no_such_tool"
        text = '<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>' % (name, json.dumps(self.call.arguments))
        return [Generation(text) for _ in conversations]


def _masked(seed: Sample) -> Sample:
    from toolduel.specs import specified

    return specified(seed, **{TOOL_MOVE_KEY: "masked_names"})


def test_a_query_failed_only_on_the_edited_list_is_an_answerable_weakness(seed):
    """No answer on the masked list is right, but the FC model answers the query right on the
    seed's own list: a weakness of the tool surface, not an impossible query."""
    from toolduel.referee.outcome import score_queries

    fc = _NamesFC(seed)
    masked, plain = score_queries(fc, [_masked(seed), seed], [seed.query] * 2, k=2, lexicon=world_lexicon())
    assert masked.fc_success == 0.0 and masked.reference_solved and masked.weakness(floor=True)
    assert plain.fc_success == 1.0 and not plain.reference_solved and fc.requests == 2 + 2 + 2  # re-asked: masked only
    assert (masked.fc_answers, plain.fc_answers) == (4, 2)  # what each query cost, the answers on its own list too
    lost = _NamesFC(seed, right=False)  # wrong on both lists: nothing shows the query answerable
    (masked,) = score_queries(lost, [_masked(seed)], [seed.query], k=2, lexicon=world_lexicon())
    assert masked.fc_success == 0.0 and not masked.solvable and not masked.weakness(floor=True)


def test_the_ledger_pays_for_the_unedited_answers_from_the_budget(seed, tmp_path):
    from toolduel.blackbox.ledger import QueryLedger, RequestBudget
    from toolduel.models.base import GenerationConfig

    fc = _NamesFC(seed)
    ledger = QueryLedger(tmp_path / "queries.jsonl", fc, k=2, generation=GenerationConfig(),
                         budget=RequestBudget(limit=4), lexicon=world_lexicon())
    (outcome,) = ledger.score([_masked(seed)], [seed.query], phase="attack")
    assert outcome.reference_solved and fc.requests == 4 and ledger.budget.remaining == 0
    record = json.loads((tmp_path / "queries.jsonl").read_text().splitlines()[-1])
    assert record["requests"] == 4 and record["solvable"] is True
    poor = QueryLedger(tmp_path / "other.jsonl", _NamesFC(seed), k=2, generation=GenerationConfig(),
                       budget=RequestBudget(limit=2), lexicon=world_lexicon())
    (outcome,) = poor.score([_masked(seed)], [seed.query + " now"], phase="attack")
    assert outcome.fc_success == 0.0 and not outcome.reference_solved  # no budget left to show it answerable


@pytest.mark.parametrize("move", TOOL_MOVES)
def test_a_request_that_is_not_the_worlds_is_left_unedited(seed, move):
    """The moves know the world's calls only (they rename from ``meta["request"]``): a seed from
    elsewhere gets no move, rather than an edit whose gold calls the referee would find changed."""
    foreign = Sample.from_dict(seed.to_dict() | {"meta": {"source": "jsonl"}})
    assert edit_tools(foreign, move, random.Random(0)) is None
