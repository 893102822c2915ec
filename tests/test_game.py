"""The duel end to end on the world's "test" budget (tiny models that build in seconds)."""

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from processes import kill_when
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.config import ConfigError, load_config
from toolduel.duel.config import GameConfig
from toolduel.run_files import read_jsonl
from toolduel.specs import style_space
from toolduel.world.generator import generate_samples

TINY = ["--rounds", "1", "--world-budget", "test", "--attack-steps", "1", "--attack-prompts-per-step", "2",
        "--num-generations", "2", "--harvest-seeds", "6", "--heldout", "world:plain,no_call", "--heldout-limit",
        "3", "--max-query-tokens", "12", "--harvest-keep", "valid", "--fc-samples", "2", "--batch-size", "8"]
CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("run-*.yaml"))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path_factory.getbasetemp() / "toolduel-cache"))


def _run(*args):
    return CliRunner().invoke(app, ["run", *args, "--no-progress"])


def test_a_round_leaves_a_complete_run_folder(tmp_path):
    out = tmp_path / "run"
    result = _run("--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1]  # round 0: the FC model before any defence
    for line in metrics:
        assert set(line["accuracy"]) == {"plain", "no_call"}
        assert all(0.0 <= a <= 1.0 for a in line["accuracy"].values())
    assert metrics[0]["attack_success_rate"] is None
    phases = {"attack", "harvest", "defend", "guard", "evaluate"}  # where the time went (and a retried defence's)
    assert phases <= set(metrics[1]["seconds"]) <= phases | {"defend-retry1", "guard-retry1"}
    guard = json.loads((out / "rounds/round_1/guard.json").read_text())  # the defence guard's verdict, in metrics too
    assert metrics[1]["guard"] == guard and guard["kept"] in ("defended", "previous")
    assert all(seconds >= 0 for seconds in metrics[1]["seconds"].values())
    harvest = read_jsonl(out / "rounds/round_1/harvest.jsonl")
    assert len(harvest) == 6 and all(("reasons" in r) and ("valid" in r) for r in harvest)
    fresh = read_jsonl(out / "rounds/round_1/fresh_attack.jsonl")  # the after-defence rate's own queries
    assert len(fresh) == 6 and not {r["seed_id"] for r in fresh} & {r["seed_id"] for r in harvest}
    # each rate is what its files say: answerable failures of valid queries, every query counting
    assert metrics[1]["validity_rate"] == pytest.approx(sum(r["valid"] for r in harvest) / 6)
    assert metrics[1]["attack_success_rate_before_defence"] == pytest.approx(_attack_success(harvest))
    assert metrics[1]["attack_success_rate"] == pytest.approx(_attack_success(fresh))
    pool = read_jsonl(out / "pool.jsonl")
    assert len(pool) == sum(r["valid"] for r in harvest) == metrics[1]["pool_size"]  # keep=valid
    for record in pool:
        assert record["round"] == 1 and record["sample"]["messages"][-1]["content"] == record["query"]
    # every attack and harvest prompt asked for a style; the attack log counts them per step
    styles = set(style_space("composed"))
    assert {r["style"] for r in harvest} <= styles
    assert all(harvest[p["harvest_index"]]["style"] == p["phrasing"] for p in pool)
    log = read_jsonl(out / "rounds/round_1/attack_log.jsonl")  # 1 step of 2 prompts x 2 queries
    assert sum(n for step in log for n, _ in step["styles"].values()) == 4 and set(log[0]["styles"]) <= styles
    assert (out / "final_fc_model" / "config.json").exists()
    assert (out / "rounds/round_1/query_model/config.json").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["attack_steps"] == 1 and saved["out"] == str(out)
    assert "round 1" in result.output and "attack success" in result.output
    _report_shows_the_run(out, metrics)


def test_the_after_defence_attack_can_be_skipped(tmp_path):
    out = tmp_path / "run"
    result = _run("--out", str(out), *TINY, "--after-defence-attack", "false")
    assert result.exit_code == 0, result.output
    assert not (out / "rounds/round_1/fresh_attack.jsonl").exists()  # no fresh queries asked
    metrics = read_jsonl(out / "metrics.jsonl")[1]
    assert metrics["attack_success_rate"] is None and metrics["attack"]["after_defence"] is None
    assert metrics["validity_rate"] is not None and (out / "report" / "report.html").exists()


def test_untargeted_augmentation_takes_its_budget_blind_to_the_answers(tmp_path):
    """harvest_keep valid with a pool budget: the first queries harvested, whatever the FC model
    answered; harvest_keep successful: the failures."""
    from toolduel.duel.harvest import harvest
    from toolduel.models.base import Generation

    seeds = generate_samples(6, seed=5, kinds=("one_call",), phrasings=("plain",))
    queries = {seed.query: seed for seed in seeds}
    wrong = {seed.id for seed in seeds[3:]}

    class Echo:  # the query model repeats its seed
        name = "echo"

        def generate(self, conversations, tools, config=None):
            return [Generation(next(q for q in queries if q in c[-1]["content"])) for c in conversations]

    class RightOnTheFirstThree:
        name = "right on the first three"

        def generate(self, conversations, tools, config=None):
            return [Generation(calls_text(queries[c[-1]["content"]].gold, queries[c[-1]["content"]].id not in wrong))
                    for c in conversations]

    for keep, expected in (("valid", [s.id for s in seeds[:2]]), ("successful", [s.id for s in seeds[3:5]])):
        config = GameConfig(out=str(tmp_path), attack_surface="query", fc_samples=2, harvest_keep=keep,
                            pool_budget=2, solvability_floor=False, harvest_styles="uniform")
        pool, _ = harvest(config, 1, seeds, Echo(), RightOnTheFirstThree(), "q", "fc", tmp_path)
        assert [p["seed_id"] for p in pool] == expected


def test_a_pool_budget_draws_blind_when_asked():
    from toolduel.duel.harvest import select_pool

    pool = [_pool_record(index, f"query number {word}", rate)
            for index, (word, rate) in enumerate([("one", 1.0), ("two", 1.0), ("three", 0.0), ("four", 0.5)])]
    assert [r["id"] for r in select_pool(pool, 2, by_band=False)] == ["r1-0", "r1-1"]
    assert [r["id"] for r in select_pool(pool, 2)] == ["r1-2", "r1-3"]  # by band: 0 first, then 0.5


def _attack_success(records):
    return sum(1 - r["fc_success"] for r in records if r["valid"] and r["solvable"] and r["fc_success"] < 1) / len(records)


def _report_shows_the_run(out, metrics):
    """The report written at the end of the run holds this run's numbers in its rounds table."""
    html = (out / "report" / "report.html").read_text()
    table = re.search(r'<table id="rounds">(.*?)</table>', html, re.S).group(1)
    header = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert [row[0] for row in rows] == ["0", "1"]
    for line, row in zip(metrics, rows):
        for name, accuracy in line["accuracy"].items():
            assert row[header.index(f"accuracy: {name}")] == f"{accuracy:.1%}"
    assert rows[1][header.index("validity")] == f"{metrics[1]['validity_rate']:.1%}"
    assert (out / "report" / "accuracy.png").exists()


def test_resume_after_kill_9_neither_loses_nor_duplicates(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "toolduel.cli", "run", "--out", str(out), "--no-progress", *TINY]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=os.environ | {"TOOLDUEL_CACHE": os.environ["TOOLDUEL_CACHE"]})
    state_file = out / "state.json"
    kill_when(process, lambda: state_file.exists() and "1:harvest" in json.loads(state_file.read_text())["completed"],
              timeout=300, poll=0.2)  # once the harvest is done
    pool_before = read_jsonl(out / "pool.jsonl")
    result = _run("--resume", str(out))
    assert result.exit_code == 0, result.output
    state = json.loads(state_file.read_text())
    assert state["completed"].count("1:harvest") == 1  # the harvest was not played again
    assert state["completed"][-1] == "finish"
    pool_after = read_jsonl(out / "pool.jsonl")
    assert [r["id"] for r in pool_after] == [r["id"] for r in pool_before]  # nothing lost, nothing twice
    assert [m["round"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1]


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    def interrupted(run, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr("toolduel.duel.loop.run_game", interrupted)
    out = tmp_path / "run"
    result = _run("--out", str(out), *TINY)
    assert result.exit_code == 2
    assert f"continue with --resume {out}" in " ".join(result.output.split())
    assert (out / "config.yaml").exists()  # the run folder stays for --resume


def test_resume_refuses_new_settings_and_fresh_runs_refuse_old_folders(tmp_path):
    (tmp_path / "state.json").write_text('{"completed": []}')
    result = _run("--out", str(tmp_path), *TINY)
    assert result.exit_code == 2 and "already holds a run" in result.output
    result = _run("--resume", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "holds no run to resume" in result.output


@pytest.mark.parametrize("args, message", [
    (["--attack-stepz", "3"], "unknown option '--attack-stepz'"),
    (["--num-generations", "1"], "num_generations must be at least 2"),
    (["--reward-form", "greedy"], "reward_form must be one of"),
    (["--defend", "dpo"], "defend must be sft or grpo"),
    (["--attack-steps"], "needs a value"),
    (["--attack-styles", "fancy"], "attack_styles must be one of"),
    (["--harvest-styles", "greedy"], "harvest_styles must be one of"),
])
def test_bad_game_settings_are_one_line_errors(args, message):
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("settings, message", [
    ({"fc_samples": 1}, "solvability_floor needs fc_samples >= 2"),
    ({"harvest_greedy": True}, "harvest_greedy answers each harvested query once"),
])
def test_the_solvability_floor_refuses_settings_that_cannot_show_an_answerable_query(settings, message):
    with pytest.raises(ConfigError, match=message):
        GameConfig(**settings)
    GameConfig(**settings, solvability_floor=False)  # counting every failure: allowed
    GameConfig(**settings, judge_model="judge", judge_mode="solve")  # a solving judge shows it


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_run_config_loads(path):
    assert isinstance(load_config(GameConfig, path), GameConfig)


def test_band_must_be_ordered():
    with pytest.raises(ConfigError, match="band_low <= band_high"):
        GameConfig(band_low=0.9, band_high=0.1)


def test_report_to_a_missing_tracker_says_what_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real_find_spec(name))
    with pytest.raises(ConfigError, match="pip install wandb"):
        GameConfig(report_to="wandb")


def test_no_progress_reaches_the_world_build(monkeypatch):
    # `toolduel run --no-progress` on an empty cache builds the world without its progress bars
    import toolduel.training.warm_start as build
    from toolduel.duel import players

    asked = []
    monkeypatch.setattr(build, "ensure_world_models", lambda budget, progress=True: asked.append(progress) or "m")
    assert players.world_models("test", progress=False) == "m" and asked == [False]


def test_the_harvest_scores_greedily_when_asked(tmp_path):
    """An FC model right when greedy and wrong when sampled fooled nobody in a greedy harvest."""
    from toolduel.duel.harvest import harvest
    from toolduel.models.base import Generation
    from toolduel.schema import Call, GoldCall, Sample, Tool

    tool = Tool("get_weather", "Current weather for a city.", {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    seed = Sample(id="w1", tools=[tool], messages=[{"role": "user", "content": "Weather in Paris?"}],
                  gold=[GoldCall.from_call(Call("get_weather", {"city": "Paris"}), tool)])

    class QueryModel:
        name = "scripted query model"

        def generate(self, conversations, tools, config=None):
            return [Generation("How is the weather in Paris?") for _ in conversations]

    class ShakyFC:
        name = "shaky"

        def __init__(self):
            self.temperatures = []

        def generate(self, conversations, tools, config=None):
            self.temperatures.append(config.temperature)
            city = "Paris" if config.temperature == 0 else "Lyon"
            return [Generation(f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}</tool_call>')
                    for _ in conversations]

    for greedy, kept in ((True, 0), (False, 1)):  # the same query for both seeds: one pool example
        fc = ShakyFC()
        config = GameConfig(out=str(tmp_path), attack_surface="query", fc_samples=4, harvest_greedy=greedy,
                            solvability_floor=False)
        pool, stats = harvest(config, 1, [seed, seed], QueryModel(), fc, "q", "fc", tmp_path)
        assert len(pool) == kept and fc.temperatures == [0.0 if greedy else config.fc_temperature]
        assert stats["attack_success_rate"] == (0.0 if greedy else 1.0)
        records = read_jsonl(tmp_path / "harvest.jsonl")
        assert [r["fc_success"] for r in records] == [1.0 if greedy else 0.0] * 2


def test_the_harvest_pools_only_failures_some_answer_got_right(tmp_path):
    """The solvability floor: a query the FC model fails on every answer may be impossible, so
    it is not a weakness; one it answers right sometimes is."""
    from toolduel.duel.harvest import harvest
    from toolduel.models.base import Generation
    from toolduel.world.lexicon import world_lexicon  # noqa: F401 - the harvest's gate

    seeds = generate_samples(2, seed=5, kinds=("one_call",), phrasings=("plain",))
    queries = {seed.query: seed for seed in seeds}

    class Echo:  # the query model repeats its seed
        name = "echo"

        def generate(self, conversations, tools, config=None):
            return [Generation(next(q for q in queries if q in c[-1]["content"])) for c in conversations]

    class HalfRight:  # right on every other answer to the first seed's query, never on the second's
        name = "half right"

        def __init__(self):
            self.calls = 0

        def generate(self, conversations, tools, config=None):
            out = []
            for conversation in conversations:
                seed = queries[conversation[-1]["content"]]
                self.calls += 1
                right = seed is seeds[0] and self.calls % 2 == 0
                out.append(Generation(calls_text(seed.gold, right)))
            return out

    config = GameConfig(out=str(tmp_path), attack_surface="query", fc_samples=4)
    pool, stats = harvest(config, 1, seeds, Echo(), HalfRight(), "q", "fc", tmp_path)
    assert [p["seed_id"] for p in pool] == [seeds[0].id]  # 2 of 4 right: answerable, pooled
    assert pool[0]["fc_success"] == 0.5 and pool[0]["solvable"] is True
    records = read_jsonl(tmp_path / "harvest.jsonl")
    assert [(r["fc_success"], r["solvable"]) for r in records] == [(0.5, True), (0.0, False)]
    assert stats["unanswered_rate"] == 0.5 and stats["attack_success_rate"] == pytest.approx(0.25)
    unfloored, _ = harvest(GameConfig(out=str(tmp_path), attack_surface="query", fc_samples=4, solvability_floor=False), 1, seeds, Echo(),
                           HalfRight(), "q", "fc", tmp_path)
    assert len(unfloored) == 2  # without the floor the impossible-looking query is pooled too


def calls_text(gold, right: bool) -> str:
    """The gold calls as the FC model writes them, or the same arguments given to a wrong function."""
    calls = [{"name": g.name if right else "wrong_function",
              "arguments": {k: v[0] for k, v in g.arguments.items() if v and v[0] != ""}} for g in gold]
    return "".join(f"<tool_call>{json.dumps(c)}</tool_call>" for c in calls)


def test_seeds_that_the_evaluation_also_holds_stop_the_run(tmp_path):
    out = tmp_path / "run"
    result = _run("--out", str(out), *TINY, "--seeds", "bfcl:simple_python", "--extra-eval", "bfcl:simple_python",
                  "--extra-eval-limit", "5")
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "share samples with the evaluation" in line and "bfcl:simple_python: 5 samples (simple_python_0" in line
    assert not out.exists()  # stopped before a run folder was written
    from toolduel.duel.loop import check_no_overlap

    check_no_overlap(GameConfig(seeds="bfcl:simple_python", extra_eval="bfcl:multiple"))  # nothing shared
    check_no_overlap(GameConfig(seeds="bfcl:simple_python", extra_eval="bfcl:simple_python", allow_overlap=True))


def test_the_attack_pays_what_the_referee_says_and_never_touches_the_fc_model(tmp_path, monkeypatch):
    """Phase 1 on the real tiny players: every reward GRPO is given is the referee's for its query
    (None for an invalid one, 0 below the solvability floor, 1 - p_F above it), and the FC model
    under attack ends with the very bytes it started with, in memory and on disk."""
    from distributed_worker import checksum

    from toolduel.duel import attack
    from toolduel.duel.players import load_chat_model
    from toolduel.models.base import Generation
    from toolduel.referee import outcome
    from toolduel.referee.validity import ValidityVerdict
    from toolduel.training.warm_start import ensure_world_models

    # the tiny query model writes no valid query: let the gate pass half of them, on their length
    monkeypatch.setattr(outcome, "check_query", lambda query, sample, lexicon=None: ValidityVerdict(
        valid=len(query) % 2 == 0, reasons=[] if len(query) % 2 == 0 else ["test: odd length"]))
    paid = []

    class RecordedReward(attack.QueryReward):
        def __call__(self, completions, sample, **kwargs):
            rewards = super().__call__(completions, sample, **kwargs)
            paid.extend(zip(self.history[-1], rewards))
            return rewards

    monkeypatch.setattr(attack, "QueryReward", RecordedReward)
    world = ensure_world_models("test", progress=False)
    seed = generate_samples(1, seed=4, kinds=("one_call",), phrasings=("plain",))[0]

    class PartlyRight:
        """The real tiny FC model, whose answers to every other valid query are replaced: three of
        its four answers by the gold calls (p_F = 0.75, above the floor); the others stay its own
        (wrong: p_F = 0, below the floor)."""

        def __init__(self):
            self.model = load_chat_model(world.fc_path, config)
            self.name = "partly right"

        def generate(self, conversations, tools, config=None):
            answers = self.model.generate(conversations, tools, config)
            right = Generation(calls_text(seed.gold, right=True))
            return [right if (i // 4) % 2 == 0 and i % 4 != 3 else a for i, a in enumerate(answers)]

    config = GameConfig(out=str(tmp_path), world_budget="test", attack_steps=2, attack_prompts_per_step=2,
                        num_generations=4, max_query_tokens=12, fc_samples=4, duplicate_penalty=0.0)
    fc_model = PartlyRight()
    on_disk = {p.name: p.read_bytes() for p in world.fc_path.iterdir() if p.is_file()}
    in_memory = checksum(fc_model.model.model)
    attack.run_attack(config, [seed] * 2, fc_model, world.query_path, tmp_path / "round_1", progress=False,
                      on_log=lambda line: None)

    assert len(paid) == 2 * 2 * 4
    branches = set()
    for scored, reward in paid:
        if not scored.valid:
            branches.add("invalid")
            assert reward is None, scored
        elif not scored.solvable:
            branches.add("below the floor")
            assert reward == 0.0, scored  # the FC model never got it right
        else:
            branches.add("above the floor")
            assert scored.fc_success == 0.75 and reward == pytest.approx(0.25), scored
    assert branches == {"invalid", "below the floor", "above the floor"}
    # the log's reward statistics are those of the step's own rewards: mean over the paid ones
    # (invalid ones, None, are out of the update), and the share of prompts (4 queries each)
    # whose paid queries, two or more, were paid alike and so taught nothing
    log = read_jsonl(tmp_path / "round_1" / "attack_log.jsonl")
    for step, record in enumerate(log):
        rewards = [reward for _, reward in paid[8 * step:8 * step + 8]]
        groups = [[r for r in rewards[i:i + 4] if r is not None] for i in (0, 4)]
        assert record["reward_mean"] == pytest.approx(statistics.fmean(r for g in groups for r in g))
        assert record["zero_signal_groups"] == sum(len(g) > 1 and len(set(g)) == 1 for g in groups) / 2
    assert checksum(fc_model.model.model) == in_memory
    assert {p.name: p.read_bytes() for p in world.fc_path.iterdir() if p.is_file()} == on_disk


def _pool_record(index: int, query: str, fc_success: float, value: str = "12") -> dict:
    gold = [{"convert_length": {"value": [value], "from_unit": ["km"], "to_unit": ["mi"]}}]
    return {"id": f"r1-{index}", "query": query, "fc_success": fc_success, "harvest_index": index,
            "sample": {"gold": gold}}


def test_the_pool_keeps_one_of_each_example_and_spans_the_success_bands():
    from toolduel.duel.harvest import select_pool

    pool = [_pool_record(0, "Convert 12 km to mi, 5 times.", 0.0),
            _pool_record(1, "convert 12 KM to mi -- 7 times", 0.5),  # the same example: case, digits, punctuation
            _pool_record(2, "Convert 12 km to mi, 5 times.", 0.0, value="13"),  # other gold calls: another example
            _pool_record(3, "How far is 12 km in mi?", 0.0),
            _pool_record(4, "12 km, in miles please", 0.25),
            _pool_record(5, "km 12 to mi", 0.75),
            _pool_record(6, "what is 12 km as mi", 0.25)]
    assert [r["id"] for r in select_pool(pool, None)] == ["r1-0", "r1-2", "r1-3", "r1-4", "r1-5", "r1-6"]
    # a budget of 3 takes one of each band (0, 0.25, 0.75) rather than the first three found (all 0)
    assert [r["id"] for r in select_pool(pool, 3)] == ["r1-0", "r1-4", "r1-5"]
    assert [r["id"] for r in select_pool(pool, 5)] == ["r1-0", "r1-2", "r1-4", "r1-5", "r1-6"]
    # the same query answered against another tool list is another example; the same list, a repeat
    moved = [_pool_record(0, "Convert 12 km to mi.", 0.0) | {"tool_move": move}
             for move in ("masked_names", "reordered", None, "unchanged", "masked_names")]
    assert [r["tool_move"] for r in select_pool(moved, None)] == ["masked_names", "reordered", None]
