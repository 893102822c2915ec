"""The defence guard: the defence data keep every kind of request, and a defended FC model that
lost one of them beyond its noise is not kept."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from toolduel.duel import guard
from toolduel.duel.config import GameConfig
from toolduel.run_files import read_jsonl
from toolduel.duel.guard import losses, replay_counts, request_kind
from toolduel.world.generator import generate_samples

SHARES = {"one_call": 0.7, "several_calls": 0.15, "no_call": 0.15}


def _holds_shares(pool: Counter, counts: dict) -> bool:
    """Every kind at least its share of the defence data, within one example of rounding."""
    total = sum(pool.values()) + sum(counts.values())
    return all(pool[k] + counts[k] >= share * total - 1 for k, share in SHARES.items())


@pytest.mark.parametrize("pool, replay", [
    (Counter(one_call=20), 20),  # a pool of one-call weaknesses only: the replay brings the others
    (Counter(one_call=30), 10),  # so many that 10 replayed cannot: more are replayed
    (Counter(one_call=5, several_calls=5, no_call=5), 15),
    (Counter(no_call=12), 0),  # replay 0 asked for, but the pool is all no-call
    (Counter(), 7),
])
def test_replay_tops_every_kind_up_to_its_share(pool, replay):
    counts = replay_counts(pool, replay, SHARES)
    assert sum(counts.values()) >= replay and all(n >= 0 for n in counts.values())
    assert _holds_shares(pool, counts), counts


def test_replay_is_as_asked_where_the_pool_leans_on_no_kind():
    counts = replay_counts(Counter(one_call=20), 20, SHARES)
    assert counts == {"one_call": 8, "several_calls": 6, "no_call": 6}  # 40 in all: 28, 6, 6
    # 30 one-call examples are 70% of 42 (within one): 6 + 6 replayed, not 10
    assert replay_counts(Counter(one_call=30), 10, SHARES) == {"one_call": 0, "several_calls": 6, "no_call": 6}


def test_the_world_replay_and_validation_sets_hold_each_kind():
    config = GameConfig(world_budget="test", validation_size=40)
    pool = [{"sample": s.to_dict()} for s in generate_samples(10, seed=1, kinds=("one_call",))]
    replay = guard.balanced_replay(config, pool, 10, round_index=1)
    kinds = Counter(request_kind(s) for s in replay)
    assert kinds == {"one_call": 4, "several_calls": 3, "no_call": 3}  # 20 in all: 14, 3, 3
    validation = guard.validation_samples(config)
    groups = Counter(guard.validation_group(s) for s in validation)
    assert groups == {"one_call": 10, "several_calls": 10, "no_call": 10, "perturbed": 10}
    assert Counter(request_kind(s) for s in validation)["one_call"] == 20  # the perturbed ones call one function
    assert len({s.meta["phrasing"] for s in validation if guard.validation_group(s) == "perturbed"}) > 3
    assert len({s.id for s in validation}) == 40
    assert [s.query for s in guard.validation_samples(config)] == [s.query for s in validation]  # every round alike


def test_a_jsonl_seed_file_gives_its_own_shares(tmp_path):
    records = []
    for sample in generate_samples(40, seed=2):
        record = sample.to_dict()
        records.append(json.dumps(record))
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(records) + "\n")
    samples = generate_samples(40, seed=2)
    expected = Counter(request_kind(s) for s in samples)
    shares = guard.seed_shares(str(path))
    assert shares == {kind: expected[kind] / 40 for kind in expected}
    drawn = guard.samples_of_kind(str(path), "no_call", 5, "replay-1-no_call", seed=0)
    assert len(drawn) == 5 and all(request_kind(s) == "no_call" for s in drawn)
    # more validation requests of a kind than the file holds: drawn again, each under its own id
    validation = guard.validation_samples(GameConfig(seeds=str(path), validation_size=3 * 40))
    assert len(validation) == 120 and len({s.id for s in validation}) == 120


def test_a_fall_counts_only_beyond_its_noise():
    before = {"one_call": (0.75, 16), "no_call": (0.6875, 16), "several_calls": (1.0, 16)}
    after = {"one_call": (0.8125, 16), "no_call": (0.1875, 16), "several_calls": (0.9375, 16)}
    assert losses(before, after, z=2.0) == {"no_call": [0.6875, 0.1875]}  # one answer lost of 16 is noise
    assert losses(before, {"one_call": (0.5, 16)}, z=2.0) == {}  # 0.25 down on 16 items: within 2 errors
    assert losses(before, {"one_call": (0.25, 16)}, z=2.0) == {"one_call": [0.75, 0.25]}


def test_the_guard_keeps_the_starting_model_when_a_kind_fell(tmp_path, monkeypatch):
    from toolduel.run_files import RunFolder

    for name in ("start", "rounds/round_1/fc_model"):
        (tmp_path / name).mkdir(parents=True)
    run = RunFolder(tmp_path, GameConfig(world_budget="test", validation_size=6, defence_retries=0))
    run.mark("1:defend", fc_path=tmp_path / "rounds/round_1/fc_model", fc_path_before_defence=tmp_path / "start")
    scores = {"start": {"one_call": (1.0, 8), "no_call": (1.0, 8)},
              "fc_model": {"one_call": (1.0, 8), "no_call": (0.0, 8)}}
    monkeypatch.setattr(guard, "_validate", lambda config, path, *args: scores[path.name])
    guard.phase_guard(run, 1, progress=False)
    assert run.state["fc_path"] == "start" and run.done("1:guard")
    verdict = json.loads((tmp_path / "rounds/round_1/guard.json").read_text())
    assert verdict["kept"] == "previous" and verdict["fell"] == {"no_call": [1.0, 0.0]}

    scores["fc_model"]["no_call"] = (0.875, 8)  # the defence lost nothing: its model is kept
    run.mark("2:defend", fc_path=tmp_path / "rounds/round_1/fc_model", fc_path_before_defence=tmp_path / "start")
    guard.phase_guard(run, 2, progress=False)
    assert run.state["fc_path"] == "rounds/round_1/fc_model"
    assert json.loads((tmp_path / "rounds/round_2/guard.json").read_text())["kept"] == "defended"


def test_a_rejected_defence_is_sent_back_with_more_replay_and_fewer_passes(tmp_path, monkeypatch):
    """The guard rejects the defence: it is trained again from the round's starting model, with
    3x the replay and half the passes, in retry_1/; the guard then keeps the retry, or, when it
    fell too, the starting model. A run resumed after the retry plays nothing again."""
    from toolduel.duel import defend as defence
    from toolduel.duel import loop
    from toolduel.run_files import RunFolder

    (tmp_path / "start").mkdir()
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"sample": s.to_dict()}) + "\n"
                                                 for s in generate_samples(4, seed=3, kinds=("one_call",))))
    trained = []

    def fake_defend(config, fc_path, samples, out_dir, save_to, on_step=None):
        trained.append((Path(fc_path).name, len(samples), config.defend_epochs, save_to.relative_to(tmp_path)))
        save_to.mkdir(parents=True)

    monkeypatch.setattr(defence, "defend", fake_defend)
    for retry_falls, kept, final in ((False, "defended", "rounds/round_1/retry_1/fc_model"),
                                     (True, "previous", "start")):
        trained.clear()
        shutil.rmtree(tmp_path / "rounds", ignore_errors=True)
        (tmp_path / "state.json").unlink(missing_ok=True)
        run = RunFolder(tmp_path, GameConfig(world_budget="test", validation_size=6, replay_ratio=1.0))
        run.mark("0:players", fc_path=tmp_path / "start")
        lost = {"round_1": True, "retry_1": retry_falls}  # which defended model lost its no-call requests

        def fake_validate(config, path, *args):
            return {"one_call": (1.0, 8), "no_call": (0.0 if lost.get(path.parent.name) else 1.0, 8)}

        monkeypatch.setattr(guard, "_validate", fake_validate)
        loop.defend_and_guard(run, 1, progress=False)
        assert [t[0] for t in trained] == ["start", "start"]  # both attempts from the starting model
        assert trained[1][1] == 4 + 3 * (trained[0][1] - 4) and trained[1][2] == trained[0][2] / 2
        assert trained[1][3] == Path("rounds/round_1/retry_1/fc_model")
        verdict = json.loads((tmp_path / "rounds/round_1/guard.json").read_text())
        assert verdict["kept"] == kept and [a["kept"] for a in verdict["attempts"]] == ["retry", kept]
        assert run.state["fc_path"] == final and run.done("1:guard-retry1")
        loop.defend_and_guard(RunFolder(tmp_path, run.config), 1, progress=False)  # resumed: all done
        assert len(trained) == 2


def test_the_guard_answers_the_validation_set_with_both_models(tmp_path, monkeypatch):
    """The real path: the tiny FC model before and after a "defence" that changed nothing (a copy)
    answers the same validation set alike, and the copy is kept."""
    import shutil

    from toolduel.run_files import RunFolder
    from toolduel.training.warm_start import ensure_world_models

    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path / "cache"))
    fc_path = ensure_world_models("test", progress=False).fc_path
    shutil.copytree(fc_path, tmp_path / "run/start")
    shutil.copytree(fc_path, tmp_path / "run/rounds/round_1/fc_model")
    run = RunFolder(tmp_path / "run", GameConfig(world_budget="test", validation_size=8, batch_size=8))
    run.mark("1:defend", fc_path=tmp_path / "run/rounds/round_1/fc_model",
             fc_path_before_defence=tmp_path / "run/start")
    guard.phase_guard(run, 1, progress=False)
    verdict = json.loads((tmp_path / "run/rounds/round_1/guard.json").read_text())
    assert verdict["kept"] == "defended" and verdict["before"] == verdict["after"]
    assert verdict["n"] == {"one_call": 2, "several_calls": 2, "no_call": 2, "perturbed": 2}
    # each model's answers are kept beside it, where the next round finds them
    answers = {which: [r["raw_output"] for r in read_jsonl(tmp_path / f"run/{folder}/validation/results.jsonl")]
               for which, folder in (("before", "."), ("after", "rounds/round_1"))}
    assert len(answers["before"]) == 8 and answers["before"] == answers["after"]
    assert run.state["fc_path"] == "rounds/round_1/fc_model"

    # round 2 starts from round 1's model, validated already: only its defended model answers
    shutil.copytree(fc_path, tmp_path / "run/rounds/round_2/fc_model")
    run.mark("2:defend", fc_path=tmp_path / "run/rounds/round_2/fc_model",
             fc_path_before_defence=tmp_path / "run/rounds/round_1/fc_model")
    loaded = []
    real_load = guard.load_chat_model
    monkeypatch.setattr(guard, "load_chat_model", lambda path, *args: loaded.append(path) or real_load(path, *args))
    guard.phase_guard(run, 2, progress=False)
    assert loaded == [tmp_path / "run/rounds/round_2/fc_model"]
    assert json.loads((tmp_path / "run/rounds/round_2/guard.json").read_text())["before"] == verdict["after"]


def test_the_defence_trains_on_the_balanced_replay(tmp_path, monkeypatch):
    from toolduel.duel import defend
    from toolduel.run_files import RunFolder, write_jsonl_atomic

    (tmp_path / "start").mkdir()
    pool = [{"id": s.id, "round": 1, "query": s.query, "sample": s.to_dict()}
            for s in generate_samples(10, seed=1, kinds=("one_call",))]
    write_jsonl_atomic(tmp_path / "pool.jsonl", pool)
    run = RunFolder(tmp_path, GameConfig(world_budget="test"))
    run.save(fc_path="start")
    trained = []
    monkeypatch.setattr(defend, "defend", lambda config, fc_path, samples, out_dir, save_to, on_step: trained.extend(
        samples) or save_to.mkdir(parents=True))
    defend.phase_defend(run, 1, progress=False)
    # 10 pool examples (one call) and 10 replayed: 14 one-call, 3 two-call and 3 no-call in all
    assert Counter(request_kind(s) for s in trained) == {"one_call": 14, "several_calls": 3, "no_call": 3}
    assert run.state["fc_path_before_defence"] == "start" and run.state["fc_path"] == "rounds/round_1/fc_model"
