"""benchmarks/game.py on the tiny `test` world: both arms play their rounds from the same FC model,
a rerun continues without playing a finished run again, and other settings are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--world-budget", "test", "--rounds", "2", "--harvest-seeds", "8", "--pool-budget", "2", "--attack-steps", "1",
        "--composed-limit", "20", "--plain-limit", "2", "--bfcl", "", "--attack-prompts-per-step", "2",
        "--num-generations", "2", "--max-query-tokens", "12", "--fc-samples", "2", "--batch-size", "8",
        "--validation-size", "8"]


def _game(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/game.py"), "--out", str(out), *FAST, *flags],
                          capture_output=True, text=True, timeout=600)


def test_the_game_benchmark_plays_both_arms_and_continues_where_it_stopped(tmp_path):
    out = tmp_path / "game.json"
    first = _game(out, "--seeds", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    work = tmp_path / "game.work"
    duel, untargeted = (work / "seed0" / arm for arm in ("duel", "untargeted"))
    duel_config, untargeted_config = (yaml.safe_load((d / "config.yaml").read_text()) for d in (duel, untargeted))
    assert duel_config["attack_steps"] == 1 and untargeted_config["attack_steps"] == 0
    assert (untargeted_config["harvest_keep"], untargeted_config["harvest_styles"]) == ("valid", "uniform")
    assert duel_config["fc_model"] == untargeted_config["fc_model"] and duel_config["pool_budget"] == 2
    assert duel_config["heldout"] == "world:composed" and duel_config["heldout_limit"] == 20
    report = json.loads(out.read_text())
    for arm in ("duel", "untargeted"):
        values = report["arms"][arm]
        assert values["seeds"] == [0] and len(values["composed"][0]) == 3 and len(values["added"][0]) == 2
        assert all(added <= 2 for added in values["added"][0]) and (work / "seed0" / arm / "final_scores.json").exists()
    # round 0 is the same FC model in both arms, answering greedily: no difference on any item
    round_0 = report["paired"]["round 0"]
    assert round_0["pairs"] == 20 and round_0["mean"] == 0 and round_0["ci95"] == [0, 0]

    kept = (duel / "metrics.jsonl").stat().st_mtime_ns
    second = _game(out, "--seeds", "2")
    assert second.returncode == 0, second.stderr[-2000:]
    assert (duel / "metrics.jsonl").stat().st_mtime_ns == kept  # a finished run is not played again
    assert json.loads(out.read_text())["arms"]["duel"]["seeds"] == [0, 1]

    other = _game(out, "--seeds", "2", "--pool-budget", "3")
    assert other.returncode != 0 and "other settings (pool_budget)" in other.stderr
