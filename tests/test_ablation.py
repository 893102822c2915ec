"""benchmarks/ablation.py on the tiny `test` world: every step's result is kept, a rerun continues
where the last one stopped (more seeds, a lost arm), and other settings are refused."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--world-budget", "test", "--regimes", "plain", "--arms", "none,untargeted,adversarial",
        "--harvest-seeds", "8", "--budget", "2", "--replay", "4", "--attack-steps", "1", "--perturbed-limit", "7",
        "--plain-limit", "2", "--bfcl", ""]


def _ablation(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/ablation.py"), "--out", str(out), *FAST, *flags],
                          capture_output=True, text=True, timeout=600)


def test_an_ablation_continues_where_it_stopped(tmp_path):
    out = tmp_path / "ablation.json"
    first = _ablation(out, "--seeds", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    work = tmp_path / "ablation.work" / "plain"
    results = {arm: work / f"seed0/arm-{arm}/result.json" for arm in ("none", "untargeted", "adversarial")}
    assert all(path.exists() for path in results.values())
    assert (work / "seed0/attack/done.json").exists() and (work / "seed0/rl_harvest/stats.json").exists()
    assert not (work / "seed0/arm-none/fc_model").exists()  # the arm's model is gone, its scores stay
    report = json.loads(out.read_text())
    assert {arm: len(v["perturbed"]["values"]) for arm, v in report["plain"]["arms"].items()} == \
        {"none": 1, "untargeted": 1, "adversarial": 1}
    assert set(report["plain"]["yield"]) == {"warm", "rl", "rl_with_attack"} and "start" in report["plain"]

    kept = {arm: path.stat().st_mtime_ns for arm, path in results.items()}
    results["untargeted"].unlink()  # as if the ablation had been stopped during that arm
    second = _ablation(out, "--seeds", "2")
    assert second.returncode == 0, second.stderr[-2000:]
    assert results["none"].stat().st_mtime_ns == kept["none"]  # done steps are not played again
    assert results["adversarial"].stat().st_mtime_ns == kept["adversarial"]
    assert results["untargeted"].exists()
    report = json.loads(out.read_text())
    assert all(v["seeds"] == [0, 1] for v in report["plain"]["arms"].values())
    paired = report["plain"]["paired"]["adversarial - untargeted"]  # the same 7 items in each of 2 seeds
    assert paired["pairs"] == 14 and len(paired["per_seed"]) == 2 and paired["ci95"][0] <= paired["mean"]

    other = _ablation(out, "--seeds", "2", "--budget", "3")
    assert other.returncode != 0 and "other settings (budget)" in other.stderr


def _load_ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks/ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_arm_adds_the_same_number_of_examples_and_only_weaknesses(tmp_path, monkeypatch):
    """The arms differ only in which examples they add: the same number (> 0) each, from the
    harvests' weaknesses (failed on some answer, right on another) for selected and adversarial."""
    from toolduel.referee.outcome import AttackOutcome, pool_record
    from toolduel.world.generator import generate_samples

    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path / "cache"))
    ablation = _load_ablation()
    seeds = generate_samples(12, seed=3, kinds=("one_call",), phrasings=("plain",))

    def records(name: str, successes: list[float]) -> list[dict]:  # valid harvested queries, k = 4 answers
        out = []
        for index, (seed, p) in enumerate(zip(seeds, successes)):
            verdicts = [{"valid": i < 4 * p, "error_type": None if i < 4 * p else "wrong_value",
                         "kind": "ok" if i < 4 * p else "wrong_value"} for i in range(4)]
            outcome = AttackOutcome(query=f"{name} {index}: {seed.query}", valid=True, reasons=[],
                                    fc_outputs=[""] * 4, verdicts=verdicts, fc_success=p)
            out.append(pool_record(f"{name}-{index}", 1, seed, outcome, name, "fc"))
        return out

    # warm: 2 weaknesses (p = 0.5, 0.25), 1 failure nobody answered (p = 0), 3 answered right
    harvests = {"warm_harvest": records("warm", [1.0, 0.5, 0.0, 1.0, 0.25, 1.0]),
                "rl_harvest": records("rl", [0.75, 0.0, 0.5, 0.5, 1.0])}  # 3 weaknesses
    monkeypatch.setattr(ablation, "harvested", lambda name, query, fc, folder, config, counts=None: harvests[folder.name])
    monkeypatch.setattr(ablation, "attacked", lambda query, fc, folder, config: query)
    defended: dict[str, list] = {}
    real_defend = ablation.defend
    monkeypatch.setattr(ablation, "defend", lambda config, fc, samples, arm_dir, save_to: defended.setdefault(
        arm_dir.name, samples) and real_defend(config, fc, samples, arm_dir, save_to=save_to))
    args = argparse.Namespace(game={}, world_budget="test", attack_steps=1, harvest_seeds=6, budget=3, replay=4,
                              arms=list(ablation.ARMS), perturbed_limit=7, plain_limit=2, bfcl="", bfcl_limit=1)
    fc_path = ablation.world_models("test").fc_path
    ablation.play_seed("plain", 0, fc_path, args, tmp_path / "work")

    added = {arm: json.loads((tmp_path / f"work/plain/seed0/arm-{arm}/result.json").read_text())["added"]
             for arm in ablation.ARMS}
    assert added == {"none": 0, "untargeted": 2, "selected": 2, "adversarial": 2}  # the scarcest supply: 2 weaknesses
    queries = {arm: sorted(s.query for s in samples if not s.id.startswith("replay")) for arm, samples in defended.items()}
    assert all(len(samples) == 4 + 2 for samples in defended.values())  # replay 4, plus 2 added (or replayed)
    assert queries["arm-selected"] == sorted([harvests["warm_harvest"][1]["query"], harvests["warm_harvest"][4]["query"]])
    assert queries["arm-adversarial"] == sorted([harvests["rl_harvest"][0]["query"], harvests["rl_harvest"][2]["query"]])
    assert queries["arm-none"] == []  # its two extra examples are replayed ones


def test_the_paired_interval_treats_an_items_seeds_as_one_draw(tmp_path):
    """Two seeds that agree item by item are not twice the evidence: the bootstrap draws items
    (with all their seeds), so the interval is as wide as for one seed of 8 items, not 16."""
    ablation = _load_ablation()
    for seed in (0, 1):
        for arm, right in (("adversarial", range(8)), ("untargeted", range(4, 8))):
            folder = tmp_path / f"plain/seed{seed}/arm-{arm}"
            (folder / "eval/hard").mkdir(parents=True)
            (folder / "result.json").write_text("{}")
            (folder / "eval/hard/results.jsonl").write_text(
                "".join(json.dumps({"id": f"q{i}", "valid": i in right}) + "\n" for i in range(8)))
    result = ablation.paired(tmp_path, "plain", "adversarial", "untargeted")
    assert result["mean"] == 0.5 and result["pairs"] == 16 and result["items"] == 8 and result["per_seed"] == [0.5, 0.5]
    low, high = result["ci95"]
    assert low <= 0.125 and high >= 0.875  # 16 independent pairs would give about [0.25, 0.75]


def test_the_sparse_regime_holds_back_whole_pairs_and_scores_them_on_the_composed_set(tmp_path, monkeypatch):
    from toolduel.duel.config import GameConfig
    from toolduel.world.phrasing import COMBINATIONS, PHRASINGS, kinds_of

    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path / "cache"))
    ablation = _load_ablation()
    held, trained = set(ablation.HELD_BACK_COMBINATIONS), set(ablation.regime_phrasings("sparse"))
    assert not held & trained and held | trained == {*PHRASINGS, *COMBINATIONS} and 0 < len(held) < len(COMBINATIONS) / 3
    assert all({"indirect_values", "noisy"} <= set(kinds_of(c)) or {"reordered", "terse"} <= set(kinds_of(c))
               for c in held)
    args = argparse.Namespace(perturbed_limit=7, composed_limit=len(COMBINATIONS), plain_limit=2, bfcl="",
                              bfcl_limit=1)
    config = GameConfig(world_budget="test", batch_size=16)
    scores = ablation.scored(ablation.world_models("test").fc_path, tmp_path / "eval", args, config, "sparse")
    results = {r["id"]: r for r in (json.loads(line) for line in
                                    (tmp_path / "eval/composed/results.jsonl").read_text().splitlines())}
    assert len(results) == len(COMBINATIONS) == len(scores["per_kind"])  # one query of each combination
    right = [r["valid"] for r in results.values() if r["category"] in held]
    assert scores["held_back"] == sum(right) / len(right) and scores["perturbed"] == scores["sets"]["composed"]
