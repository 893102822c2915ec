"""The embedded world: catalog, seeded generator, held-out sets, tiny models, cached build."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter

import jsonschema
import pytest

from toolduel.referee.validity import check_query, nothing_held_out
from toolduel.schema import OPTIONAL, Call, Sample
from toolduel.world.functions import all_functions, domains, functions_by_name, world_tools
from toolduel.world.generator import (
    KINDS,
    generate_samples,
    make_sample,
    render_query,
    rephrase,
    split_of,
)
from toolduel.world.heldout import WORLD_SETS, load_world_set
from toolduel.world.lexicon import world_lexicon
from toolduel.world.phrasing import _CHATTY_OPEN
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS, PHRASINGS, kinds_of
from toolduel.world.tool_edits import TOOL_MOVES, edit_tools
from toolduel.world.surface import indirect_forms, number_words, surface_forms

WORLD = world_lexicon()  # the rule check knows the world's surface forms and intent words
# A rewrite of a seed may fall in the held-out split, which the gate refuses (tested on its own)
REWRITES = dataclasses.replace(WORLD, held_out=nothing_held_out)


@pytest.fixture(scope="module")
def mixed_samples() -> list[Sample]:
    return generate_samples(1500, seed=11)


# --- catalog ------------------------------------------------------------------------------

def test_world_has_at_least_40_functions_over_8_domains():
    assert len(all_functions()) >= 40
    assert len(domains()) >= 8
    assert {"weather", "arithmetic", "units", "calendar", "shopping", "travel", "messaging"} <= set(domains())


def test_tools_use_every_parameter_type_and_declare_defaults():
    types, with_default, enums = Counter(), 0, 0
    for tool in world_tools():
        jsonschema.Draft7Validator.check_schema(tool.parameters)
        for name, spec in tool.properties.items():
            types[spec["type"]] += 1
            enums += "enum" in spec
            if name not in tool.required and "default" in spec:
                with_default += 1
                jsonschema.validate(spec["default"], spec)  # a default must fit its own schema
    assert set(types) == {"string", "integer", "number", "boolean", "array"}
    assert enums > 10 and with_default > 10


def test_surface_forms_know_idioms_words_and_synonyms():
    assert number_words(125) == "one hundred twenty-five"
    assert {"12", "twelve", "a dozen"} <= set(surface_forms(12))
    assert "twelve and a half" in surface_forms(12.5)
    assert "kilometers" in indirect_forms("km") and "euros" in indirect_forms("EUR")
    assert "May 12th, 2025" in surface_forms("2025-05-12")
    assert surface_forms(True) == []  # a boolean has no surface form: the check skips it


# --- generator ----------------------------------------------------------------------------

def test_same_seed_same_samples_and_another_seed_differs():
    first = [s.to_dict() for s in generate_samples(50, seed=3)]
    assert first == [s.to_dict() for s in generate_samples(50, seed=3)]
    assert first != [s.to_dict() for s in generate_samples(50, seed=4)]


def test_samples_do_not_depend_on_the_processs_hash_seed():
    """Python salts string hashes per process, so anything drawn in set order would differ
    from one process to the next (it did: distractors of two-domain samples)."""
    script = ("import hashlib, json; from toolduel.world.generator import generate_samples; "
              "from toolduel.world.training_data import fc_examples; "
              "data = [s.to_dict() for s in generate_samples(400, seed=5)], fc_examples(300); "
              "print(hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(salt)},
                              capture_output=True, text=True, check=True).stdout for salt in (1, 2, 3)}
    assert len(digests) == 1


def test_every_kind_and_phrasing_is_produced(mixed_samples):
    seen = Counter((s.meta["kind"], s.meta["phrasing"]) for s in mixed_samples)
    assert {(k, p) for k in KINDS for p in PHRASINGS} <= set(seen)


def test_samples_have_target_plus_1_to_4_distractors(mixed_samples):
    same_domain_distractor = 0
    for sample in mixed_samples:
        names = [t.name for t in sample.tools]
        assert len(names) == len(set(names))
        gold_names = {g.name for g in sample.gold}
        assert gold_names <= set(names)
        assert 1 <= len(set(names) - gold_names) <= 4
        domain_of = {f.name: f.domain for f in all_functions()}
        gold_domains = {domain_of[n] for n in gold_names}
        same_domain_distractor += any(domain_of[n] in gold_domains for n in set(names) - gold_names)
    assert same_domain_distractor > len(mixed_samples) // 4


def test_gold_calls_are_valid_against_their_tool_schema(mixed_samples):
    for sample in mixed_samples:
        tools = {t.name: t for t in sample.tools}
        for gold in sample.gold:
            call = gold.canonical_call()
            tool = tools[call.name]
            jsonschema.validate(call.arguments, tool.parameters)
            assert set(tool.required) <= set(call.arguments)
            for param, answers in gold.arguments.items():  # an omittable one is optional in the schema
                assert OPTIONAL not in answers or param not in tool.required


def test_kinds_have_the_right_number_of_gold_calls(mixed_samples):
    for sample in mixed_samples:
        assert len(sample.gold) == {"one_call": 1, "two_call": 2, "no_call": 0}[sample.meta["kind"]]
        assert sample.category == (sample.meta["phrasing"] if sample.meta["kind"] == "one_call"
                                   else sample.meta["kind"])


def test_every_generated_query_passes_the_validity_check(mixed_samples):
    failures = [(s.query, check_query(s.query, s, WORLD).reasons) for s in mixed_samples
                if not check_query(s.query, s, WORLD).valid]
    assert failures == []


def test_numbers_in_words_never_run_together_into_another_number():
    # "Compute the sum of five hundred and twenty-seven" reads as 527, not as 500 and 27
    rng = random.Random(3)
    queries = {render_query([Call("add_numbers", {"a": 500, "b": 27})], "indirect_values", rng)
               for _ in range(100)} - {None}
    assert any("five hundred and 27" in q for q in queries)  # the words are still said where they are clear
    assert not [q for q in queries if "five hundred and twenty-seven" in q]


def test_samples_round_trip_through_json(mixed_samples):
    for sample in mixed_samples[:100]:
        again = Sample.from_dict(json.loads(json.dumps(sample.to_dict())))
        assert again.to_dict() == sample.to_dict()


def test_perturbations_change_the_query_but_not_the_request():
    rng = random.Random(0)
    sample = make_sample("one_call", "plain", random.Random(5), "x")
    for phrasing in PERTURBATIONS:
        queries = {rephrase(sample, phrasing, rng) for _ in range(5)} - {None}
        assert queries and sample.query not in queries, phrasing
        for query in queries:
            assert check_query(query, sample, REWRITES).valid, (phrasing, query)


def test_the_worlds_rewrites_of_a_seed_stay_within_the_gates_growth_bound():
    # the gate's MAX_GROWTH is sized from these: no style of the world adds more to its seed
    rng = random.Random(1)
    seeds = generate_samples(300, seed=3, phrasings=("plain",))
    failures = [(phrasing, query, check_query(query, seed, REWRITES).reasons) for seed in seeds for phrasing in PHRASINGS
                for query in [rephrase(seed, phrasing, rng)] if query and not check_query(query, seed, REWRITES).valid]
    assert failures == []


def test_every_combination_composes_its_kinds_into_a_valid_query():
    samples = generate_samples(40 * len(COMBINATIONS), seed=12, kinds=("one_call",), phrasings=COMBINATIONS)
    assert {s.meta["phrasing"] for s in samples} == set(COMBINATIONS)
    assert [(s.query, check_query(s.query, s, WORLD).reasons) for s in samples
            if not check_query(s.query, s, WORLD).valid] == []
    for sample in samples:
        kinds, query = kinds_of(sample.meta["phrasing"]), sample.query
        if "distractor_numbers" in kinds:  # a number the request does not hold
            stated = set(re.findall(r"\d+", json.dumps(sample.meta["request"])))
            assert set(re.findall(r"\d+", query)) - stated, query
        if "chatty" in kinds and "noisy" not in kinds:
            assert query.startswith(tuple(o.split(" ")[0] for o in _CHATTY_OPEN)), query
        if "terse" in kinds:  # keyword style: no question mark, no "please" outside the values
            rest = query.lower()
            for value in (v for call in sample.meta["request"] for v in call["arguments"].values()):
                rest = rest.replace(str(value).lower(), "")
            assert "?" not in rest and "please" not in rest, query


def test_the_worlds_composed_rewrites_rarely_outgrow_the_gates_bound():
    rng = random.Random(1)
    seeds = generate_samples(100, seed=3, phrasings=("plain",))
    rewrites = [(seed, q) for seed in seeds for phrasing in COMBINATIONS for q in [rephrase(seed, phrasing, rng)] if q]
    failures = [(q, check_query(q, seed, REWRITES).reasons) for seed, q in rewrites
                if not check_query(q, seed, REWRITES).valid]
    assert len(rewrites) > 2000 and len(failures) <= len(rewrites) // 100
    assert all(reason.startswith("length") for _, reasons in failures for reason in reasons)


@pytest.mark.parametrize("name, message", [("terse+noisy", "in that order"), ("chatty+terse", "clashing"),
                                           ("reordered+reordered", "unknown phrasing"), ("shouting", "plain, one of")])
def test_an_unknown_or_clashing_combination_is_named(name, message):
    with pytest.raises(ValueError, match=message):
        make_sample("one_call", name, random.Random(0), "x")


def test_make_sample_rejects_unknown_kind_with_the_valid_names():
    with pytest.raises(ValueError, match="one_call"):
        make_sample("three_call", "plain", random.Random(0), "x")


# --- held-out sets ------------------------------------------------------------------------

def test_heldout_sets_are_fixed_named_and_tagged():
    assert {"plain", "hard", "two_call", "no_call", *PERTURBATIONS} <= set(WORLD_SETS)
    plain = load_world_set("plain", limit=40)
    assert [s.to_dict() for s in plain] == [s.to_dict() for s in load_world_set("plain", limit=40)]
    assert all(s.category == "plain" and s.meta["phrasing"] == "plain" for s in plain)
    hard = load_world_set("hard", limit=len(PERTURBATIONS) * 3)
    assert Counter(s.category for s in hard) == {k: 3 for k in PERTURBATIONS}
    assert all(s.meta["phrasing"] == s.category for s in hard)
    assert all(len(s.gold) == 2 for s in load_world_set("two_call", limit=20))
    assert all(not s.gold for s in load_world_set("no_call", limit=20))


def test_the_composed_set_interleaves_every_combination_from_held_out_text():
    composed = load_world_set("composed")
    assert len(composed) == 8 * len(COMBINATIONS) and len({s.query for s in composed}) == len(composed)
    assert [s.category for s in composed[:len(COMBINATIONS)]] == list(COMBINATIONS)  # any prefix is balanced
    assert all(s.meta["phrasing"] == s.category and len(s.gold) == 1 for s in composed)
    assert all(split_of(s.query) == "heldout" for s in composed)
    assert [s.query for s in load_world_set("composed", limit=5)] == [s.query for s in composed[:5]]


@pytest.mark.parametrize("move", TOOL_MOVES)
def test_a_tool_move_keeps_the_gold_calls_the_one_right_answer(move):
    from toolduel.checker import check_sample

    rng, edited_any = random.Random(0), False
    for sample in generate_samples(60, seed=5, kinds=("one_call", "two_call"), phrasings=("plain",)):
        edited = edit_tools(sample, move, rng)
        if edited is None:
            continue
        edited_any = True
        tools, gold_names = {t.name: t for t in edited.tools}, {g.name for g in edited.gold}
        assert edited.query == sample.query and edited.meta["tool_move"] == move and gold_names <= set(tools)
        for gold in edited.gold:
            jsonschema.validate(gold.canonical_call().arguments, tools[gold.name].parameters)
        assert check_sample(edited, [g.canonical_call() for g in edited.gold]).valid
        before = {t.name: t for t in sample.tools}
        if move in ("masked_names", "renamed_parameters"):  # the calls of the old list are wrong now
            assert not check_sample(edited, [g.canonical_call() for g in sample.gold]).valid
        if move == "masked_names":
            assert all(re.fullmatch(r"tool_\d\d", name) for name in tools) and len(tools) == len(before)
            assert sorted(t.description for t in tools.values()) == sorted(t.description for t in before.values())
        if move == "renamed_parameters":
            for name in gold_names:
                assert list(tools[name].properties) == [f"arg_{i}" for i in range(1, len(tools[name].properties) + 1)]
                assert all(f"{p}: " in tools[name].description for p in tools[name].properties)
        if move == "distractors":
            added = set(tools) - set(before)
            gold_domains = {functions_by_name()[g.name].domain for g in sample.gold}
            assert 1 <= len(added) <= 3 and all(functions_by_name()[n].domain in gold_domains for n in added)
        if move == "reordered":
            assert [t.name in gold_names for t in edited.tools] == sorted(t.name in gold_names for t in edited.tools)
            assert len(tools) == len(before) + 1
        if move == "reworded":
            for name in gold_names:
                assert tools[name].description != before[name].description
                assert tools[name].description.rstrip(".") in {i.rstrip("?.") for i in functions_by_name()[name].alt_intents}
    assert edited_any


def test_the_tools_set_interleaves_every_move_on_held_out_requests():
    tools = load_world_set("tools")
    assert len(tools) == 40 * len(TOOL_MOVES) and [s.category for s in tools[:len(TOOL_MOVES)]] == list(TOOL_MOVES)
    assert all(split_of(s.query) == "heldout" and len(s.gold) == 1 for s in tools)
    assert [s.to_dict() for s in load_world_set("tools", limit=10)] == [s.to_dict() for s in tools[:10]]


def test_nothing_the_world_trains_on_is_held_out_text():
    """The warm-start rows of both players (the query model's targets are rewrites, which land in
    the held-out split one time in ten), the duel's seeds and its replay: every query they hold is
    train-split text, so none is a query of a held-out set, whose queries are all held-out text."""
    from toolduel.referee.tool_grammar import split_completion
    from toolduel.world.training_data import fc_examples, query_examples, replay_requests, seed_requests

    heldout = {s.query for name in ("plain", "hard", "two_call", "no_call", "composed")
               for s in load_world_set(name, limit=150)}
    assert all(split_of(query) == "heldout" for query in heldout)
    trained = [m["content"] for row in fc_examples(240) for m in row["messages"] if m["role"] == "user"]
    trained += [split_completion(row["messages"][-1]["content"])[0] for row in query_examples(240)]
    trained += [s.query for s in seed_requests(240, seed=1, id_prefix="s") + replay_requests(240, seed=1, id_prefix="r")]
    assert len(trained) > 900 and [q for q in trained if split_of(q) != "train"] == []


def test_unknown_world_set_names_the_valid_ones():
    with pytest.raises(ValueError, match="plain.*hard"):
        load_world_set("plian")


# --- commands -----------------------------------------------------------------------------

def test_world_sample_command_writes_seeded_jsonl(tmp_path):
    from typer.testing import CliRunner

    from toolduel.cli import app  # the real command line: `world sample` is one of two `world` commands

    out = tmp_path / "samples.jsonl"
    result = CliRunner().invoke(app, ["world", "sample", "--n", "12", "--seed", "3", "--kind", "chatty", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = [Sample.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(samples) == 12 and {s.meta["phrasing"] for s in samples} == {"chatty"}
    assert [s.to_dict() for s in samples] == [s.to_dict() for s in generate_samples(
        12, seed=3, kinds=("one_call",), phrasings=("chatty",))]
    composed = CliRunner().invoke(app, ["world", "sample", "--n", "4", "--kind", "reordered+terse", "--out", str(out)])
    assert composed.exit_code == 0, composed.output
    assert {json.loads(line)["meta"]["phrasing"] for line in out.read_text().splitlines()} == {"reordered+terse"}
    bad = CliRunner().invoke(app, ["world", "sample", "--kind", "nonsense", "--out", str(out)])
    assert bad.exit_code != 0 and "plain" in bad.output
