"""The attack's spec (the style a query is asked in, the move on the tool list): drawn evenly for
the attack, towards what paid for the harvest."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from toolduel.duel.config import GameConfig
from toolduel.models.base import GenerationConfig
from toolduel.duel.harvest import attack_records, harvest
from toolduel.models.base import Generation
from toolduel.prompts import fc_target, query_model_messages
from toolduel.referee.outcome import TOOL_MOVE_KEY, adversarial_sample
from toolduel.schema import Sample
from toolduel.specs import (
    STYLE_KEY,
    assign_specs,
    attack_spec_counts,
    count_specs,
    merge_counts,
    specified,
    style_space,
)
from toolduel.world.tool_edits import TOOL_MOVES
from toolduel.world.generator import generate_samples
from toolduel.world.lexicon import world_lexicon
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS


@pytest.fixture(scope="module")
def seeds():
    return generate_samples(300, seed=2, kinds=("one_call",), phrasings=("plain",))


def test_the_composed_space_holds_every_kind_and_combination():
    assert style_space("composed") == (*PERTURBATIONS, *COMBINATIONS) and len(style_space("composed")) > 40
    assert style_space("kinds") == PERTURBATIONS and style_space("none") == ()
    with pytest.raises(ValueError, match="composed"):
        style_space("every")


def test_the_query_model_is_asked_for_the_seeds_style(seeds):
    asked = query_model_messages(specified(seeds[0], **{STYLE_KEY: "reordered+terse"}))[-1]["content"]
    assert asked.splitlines()[-1] == "Style: reordered+terse"
    assert "Style:" not in query_model_messages(specified(seeds[0], **{STYLE_KEY: None}))[-1]["content"]
    assert seeds[0].meta.get(STYLE_KEY) is None  # the seed itself is left as it was


def test_thompson_sampling_asks_most_for_what_paid_and_still_tries_the_rest(seeds):
    space = ("noisy", "terse", "chatty")
    counts = {"noisy": [40, 30], "terse": [40, 1]}  # chatty never tried
    targeted = Counter(style_of_each(assign_specs(seeds, {STYLE_KEY: space}, random.Random(0), {STYLE_KEY: counts})))
    assert targeted["noisy"] > 0.6 * len(seeds)
    assert 0 < targeted["chatty"] < targeted["noisy"] and targeted["terse"] < targeted["chatty"]
    even = Counter(style_of_each(assign_specs(seeds, {STYLE_KEY: space}, random.Random(0))))
    assert set(even) == set(space) and max(even.values()) < 0.45 * len(seeds)
    assert style_of_each(assign_specs(seeds, {STYLE_KEY: ()}, random.Random(0))) == [None] * len(seeds)


def style_of_each(samples):
    return [s.meta[STYLE_KEY] for s in samples]


def test_style_counts_add_up_over_steps_and_skip_damaged_entries():
    step = count_specs(["noisy", None, "noisy", "terse"], [True, True, False, False])
    assert step == {"noisy": [2, 1], "terse": [1, 0]}  # an unstyled query is not counted
    assert merge_counts([step, {"noisy": [3, 3], "terse": "x", "chatty": [1, 5]}, None]) == \
        {"noisy": [5, 4], "terse": [1, 0], "chatty": [1, 1]}


def test_the_attack_log_adds_up_to_the_counts_the_harvest_starts_from(tmp_path):
    round_folder = tmp_path / "round_1"
    round_folder.mkdir()
    assert attack_spec_counts(round_folder) is None  # no attack
    lines = [{"step": 1, "styles": {"noisy+terse": [4, 4], "chatty": [4, 0]}, "tool_moves": {"reworded": [8, 4]}},
             {"step": 2, "styles": {"noisy+terse": [4, 3]}}, {"step": 3}]
    (round_folder / "attack_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert attack_spec_counts(round_folder) == {STYLE_KEY: {"noisy+terse": [8, 7], "chatty": [4, 0]},
                                                TOOL_MOVE_KEY: {"reworded": [8, 4]}}


class StyleEcho:
    """A query model that writes the seed's query and names the first kind of the style it was asked for."""

    name = "query model"

    def generate(self, conversations, tools, config=None):
        return [Generation(f"{SEED.query} ({c[-1]['content'].rsplit('Style: ', 1)[-1].split('+')[0]})")
                for c in conversations]


class WeakOnTerse:
    """An FC model right on every query but the terse ones."""

    name = "FC model"

    def generate(self, conversations, tools, config=None):
        return [Generation("Sorry." if "(terse)" in c[-1]["content"] else fc_target(SEED)) for c in conversations]


SEED = generate_samples(1, seed=0, kinds=("one_call",), phrasings=("plain",))[0]


def _terse_share(records):
    return sum(r["style"] == "terse" for r in records) / len(records)


@pytest.mark.parametrize("harvest_styles", ["targeted", "uniform"])
def test_the_harvest_asks_more_for_the_styles_that_keep_failing(tmp_path, harvest_styles):
    config = GameConfig(world_budget="test", attack_surface="query", attack_styles="kinds",
                        harvest_styles=harvest_styles, fc_samples=1, solvability_floor=False)
    outcomes, records, _ = attack_records(config, 1, [SEED] * 256, StyleEcho(), WeakOnTerse())
    assert all(o.valid for o in outcomes) and {r["style"] for r in records} == set(PERTURBATIONS)
    assert all(o.fooled == (r["style"] == "terse") for o, r in zip(outcomes, records))
    if harvest_styles == "uniform":
        assert _terse_share(records) < 0.25
        return
    assert _terse_share(records[:64]) < 0.4 < 0.8 < _terse_share(records[64:])  # learnt from its first 64
    # starting from an attack that found terse weak, the first queries already go there
    _, primed, _ = attack_records(config, 1, [SEED] * 64, StyleEcho(), WeakOnTerse(),
                                  counts={STYLE_KEY: {"terse": [8, 8], "noisy": [8, 0], "chatty": [8, 0]}})
    assert _terse_share(primed) > 0.5


def test_untried_styles_are_drawn_around_the_mean_rate_not_anywhere(seeds):
    """With dozens of styles a flat prior would hand most seeds to the few never tried (the top of
    ten uniform draws is about 0.9); the prior at the space's mean rate leaves them to the evidence."""
    space = style_space("composed")
    counts = {style: [8, 1] for style in space[:36]} | {"noisy+terse": [8, 6]}  # ten styles never tried
    drawn = Counter(style_of_each(assign_specs(seeds, {STYLE_KEY: space}, random.Random(0), {STYLE_KEY: counts})))
    assert drawn["noisy+terse"] > 0.5 * len(seeds) and len(drawn) > 5


# --- the tool surface ---------------------------------------------------------------------------


class Echo:
    name = "query model"

    def generate(self, conversations, tools, config=None):
        return [Generation(SEED.query) for _ in conversations]


class WeakOnMaskedNames:
    """An FC model that calls the function by its real name: right unless the names are masked."""

    name = "FC model"

    def generate(self, conversations, tools, config=None):
        return [Generation(fc_target(SEED)) for _ in conversations]


def test_the_tool_surface_edits_what_the_fc_model_sees_and_targets_the_moves_that_break_it(tmp_path):
    config = GameConfig(world_budget="test", attack_styles="none", attack_surface="query,tools", fc_samples=1,
                        solvability_floor=False, harvest_keep="valid")
    pool, _ = harvest(config, 1, [SEED] * 256, Echo(), WeakOnMaskedNames(), "q", "fc", tmp_path, counts=None)
    records = [json.loads(line) for line in (tmp_path / "harvest.jsonl").read_text().splitlines()]
    moves = Counter(r["tool_move"] for r in records)
    assert set(moves) == {"unchanged", *TOOL_MOVES}
    for record in pool:  # the pool keeps the edited tools, the renamed gold calls and the move
        sample = Sample.from_dict(record["sample"])
        assert record["tool_move"] == sample.meta[TOOL_MOVE_KEY]
        assert {g.name for g in sample.gold} <= {t.name for t in sample.tools}
        assert record["attack_success"] == (record["tool_move"] in ("masked_names", "renamed_parameters"))
    # the harvest learns from its first chunks where the FC model breaks
    later = Counter(r["tool_move"] for r in records[128:])
    assert later["masked_names"] + later["renamed_parameters"] > 0.6 * 128


def test_a_seeds_tool_move_is_the_same_every_time_and_only_the_fc_model_sees_it():
    seed = specified(SEED, **{TOOL_MOVE_KEY: "masked_names"})
    assert seed.to_dict() == specified(SEED, **{TOOL_MOVE_KEY: "masked_names"}).to_dict()
    assert seed.tools == SEED.tools and seed.gold == SEED.gold  # the query model and the gate see the seed
    asked = adversarial_sample(seed, "Another way to ask.")
    assert asked.query == "Another way to ask." and asked.meta[TOOL_MOVE_KEY] == "masked_names"
    assert {t.name for t in asked.tools} != {t.name for t in SEED.tools} and asked.gold[0].name.startswith("tool_")
    assert adversarial_sample(asked, "Once more.").tools == asked.tools  # an edited sample is not edited twice
    no_arguments = SEED.__class__.from_dict(SEED.to_dict() | {"meta": {**SEED.meta, "request": [
        {"name": SEED.gold[0].name, "arguments": {}}]}})
    assert specified(no_arguments, **{TOOL_MOVE_KEY: "renamed_parameters"}).meta[TOOL_MOVE_KEY] is None


def test_both_surfaces_are_the_default_where_the_seeds_are_the_worlds():
    from toolduel.blackbox.config import BlackBoxConfig

    assert GameConfig(world_budget="test").surface() == "query,tools"  # world:train: the moves can edit its lists
    assert GameConfig(world_budget="test", seeds="bfcl:simple_python").surface() == "query"
    assert GameConfig(world_budget="test", attack_surface="query").surface() == "query"
    assert BlackBoxConfig(endpoint="http://127.0.0.1:9/v1", model="m").surface() == "query"  # BFCL seeds by default
    assert BlackBoxConfig(endpoint="http://127.0.0.1:9/v1", model="m", seeds="world:train").surface() == "query,tools"


@pytest.mark.parametrize("settings, message", [
    ({"attack_surface": "tools"}, "must include query"),
    ({"attack_surface": "query,prompt"}, "comma-separated list of query, tools"),
    ({"attack_surface": "query,tools", "seeds": "bfcl:simple_python"}, "needs seeds: world:train"),
    ({"tool_edits": "typed"}, "tool_edits must be one of drawn, written"),
])
def test_bad_attack_surfaces_are_named(settings, message):
    from toolduel.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        GameConfig(world_budget="test", **settings)


def test_the_black_box_harvest_also_learns_from_its_own_batches(tmp_path, monkeypatch):
    """`toolduel attack`'s harvest draws each batch's styles from what the batches before it found."""
    import toolduel.models
    from toolduel.blackbox.config import BlackBoxConfig
    from toolduel.blackbox.ledger import QueryLedger
    from toolduel.blackbox.run import harvest_endpoint, start_attack

    config = BlackBoxConfig(endpoint="http://127.0.0.1:9/v1", model="m", out=str(tmp_path / "attack"),
                            attack_styles="kinds", harvest_seeds=256, batch_size=64)
    run = start_attack(config)
    monkeypatch.setattr(toolduel.models, "load_model", lambda spec: StyleEcho())
    asked = []  # each batch's styles, repeats included (the ledger records a repeated query once)

    class Ledger(QueryLedger):
        def score(self, seeds, queries, phase, step=None):
            asked.append([seed.meta[STYLE_KEY] for seed in seeds])
            return super().score(seeds, queries, phase, step)

    ledger = Ledger(run.dir / "queries.jsonl", WeakOnTerse(), k=1, generation=GenerationConfig(), lexicon=world_lexicon())
    assert harvest_endpoint(run, [SEED], ledger, progress=False) is None
    assert [len(batch) for batch in asked] == [64] * 4 and set(asked[0]) == set(PERTURBATIONS)
    share = [batch.count("terse") / 64 for batch in asked]
    assert share[0] < 0.4 < 0.7 < min(share[1:])  # learnt from its first batch


class WritesEdits:
    """A query model that asks again with the seed's words and writes, for a masked_names move,
    the renames of every tool (and nothing for any other move)."""

    name = "query model"

    def generate(self, conversations, tools, config=None):
        out = []
        for conversation, offered in zip(conversations, tools):
            edits = [f"rename {t.name} to tool_{10 + i}" for i, t in enumerate(offered)]
            masked = "Tool move: masked_names" in conversation[-1]["content"]
            out.append(Generation(SEED.query + ("\nTool edits:\n" + "\n".join(edits) if masked else "")))
        return out


def test_a_query_model_asked_for_a_move_writes_the_edits_the_fc_model_answers_against(tmp_path):
    config = GameConfig(world_budget="test", attack_styles="none", attack_surface="query,tools", fc_samples=1,
                        solvability_floor=False, harvest_keep="valid", tool_edits="written")
    pool, _ = harvest(config, 1, [SEED] * 64, WritesEdits(), WeakOnMaskedNames(), "q", "fc", tmp_path, counts=None)
    records = [json.loads(line) for line in (tmp_path / "harvest.jsonl").read_text().splitlines()]
    assert {r["tool_move"] for r in records} == {"unchanged", *TOOL_MOVES} and all(r["valid"] for r in records)
    for record in pool:
        sample = Sample.from_dict(record["sample"])
        written = bool(record["tool_edits"])
        assert written == (record["tool_move"] == "masked_names")  # asked for it, and only then
        assert sample.query == record["query"] == SEED.query  # the FC model reads the request, never the edits
        assert ({t.name for t in sample.tools} != {t.name for t in SEED.tools}) == written
        assert record["attack_success"] == written  # the written renames broke the FC model, nothing else did


def test_the_query_model_sees_the_move_it_must_write_and_what_it_may_add():
    drawn = query_model_messages(specified(SEED, **{TOOL_MOVE_KEY: "distractors"}))
    assert "Tool move" not in drawn[-1]["content"] and "Tool edits" not in drawn[0]["content"]
    seed = specified(SEED, True, **{TOOL_MOVE_KEY: "distractors"})
    assert seed.tools == SEED.tools and "answer_tools" not in seed.meta  # nothing applied: the model writes it
    asked = query_model_messages(seed)
    assert "Tool edits:" in asked[0]["content"] and "Tool move: distractors" in asked[-1]["content"]
    addable = asked[-1]["content"].split("Can add: ")[1].split(", ")
    assert addable and not set(addable) & {t.name for t in SEED.tools}
    unchanged = query_model_messages(specified(SEED, True, **{TOOL_MOVE_KEY: "unchanged"}))
    assert unchanged == query_model_messages(SEED)


def test_the_query_model_writes_longer_completions_only_where_it_writes_edits():
    query_only = GameConfig(world_budget="test", attack_surface="query", tool_edits="written")
    assert query_only.completion_tokens() == query_only.max_query_tokens
    drawn = GameConfig(world_budget="test", attack_surface="query,tools")
    assert drawn.query_generation(0).max_new_tokens == drawn.max_query_tokens
    written = GameConfig(world_budget="test", attack_surface="query,tools", tool_edits="written")
    assert written.query_generation(0).max_new_tokens == written.max_query_tokens + 64
