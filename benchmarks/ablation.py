"""Adversarial vs untargeted vs no augmentation, at an equal number of added training examples.

    python benchmarks/ablation.py --seeds 3 --out ablation.json
    python benchmarks/ablation.py --seeds 3 --out ablation.json --defend-learning-rate 3e-4

Any other ``--flag value`` is a game setting (as for ``toolduel run``) applied to every arm.

Every arm starts from the same embedded world models (built or cached) and plays one round;
its defence trains the FC model on the same number of examples:

- ``none``: replayed plain seed data only (``budget`` more of it instead of added examples);
- ``untargeted``: ``budget`` valid queries of the warm query model, before any RL;
- ``adversarial``: ``budget`` queries of the RL-trained query model that fooled the FC model.

Writes ``{arm: {"perturbed": {"mean", "std", "values"}, "plain": {...}}}`` with accuracy on the
world's held-out perturbed queries (``hard``: every perturbation kind) and on plain queries,
plus the starting accuracy and the settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from toolduel.config import ConfigError, flag_overrides, load_config
from toolduel.duel.config import GameConfig
from toolduel.duel.loop import run_game, start_run
from toolduel.run_files import read_jsonl

ARMS = ("none", "untargeted", "adversarial")


def arm_config(arm: str, seed: int, out: Path, budget: int, replay: int, base: dict) -> GameConfig:
    settings = dict(base, out=str(out), rounds=1, seed=seed, heldout="world:plain,hard", pool_budget=budget,
                    replay_examples=replay)
    if arm == "none":
        settings.update(attack_steps=0, harvest_seeds=1, pool_budget=0, replay_examples=replay + budget)
    elif arm == "untargeted":
        settings.update(attack_steps=0, harvest_keep="valid")
    else:
        settings.update(harvest_keep="successful")
    return load_config(GameConfig, overrides=settings)


def summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=256, help="added examples per arm")
    parser.add_argument("--replay", type=int, default=256, help="replayed plain examples in every arm")
    parser.add_argument("--harvest-seeds", type=int, default=768)
    parser.add_argument("--attack-steps", type=int, default=20)
    parser.add_argument("--heldout-limit", type=int, default=200)
    parser.add_argument("--world-budget", default="default")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to play (default: all three)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the arms' run folders here")
    args, extra = parser.parse_known_args()
    arms = [arm for arm in ARMS if arm in args.arms.split(",")]
    if not arms or len(arms) != len(args.arms.split(",")):
        parser.error(f"--arms takes a comma-separated subset of {', '.join(ARMS)} (got {args.arms!r})")

    try:
        settings = flag_overrides(extra, GameConfig)
    except ConfigError as err:
        parser.error(str(err))
    base = {"harvest_seeds": args.harvest_seeds, "attack_steps": args.attack_steps,
            "heldout_limit": args.heldout_limit, "world_budget": args.world_budget} | settings
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="toolduel-ablation-"))
    results: dict[str, dict[str, list[float]]] = {arm: {"perturbed": [], "plain": [], "added": []} for arm in arms}
    start: dict[str, list[float]] = {"perturbed": [], "plain": []}
    started = time.time()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arm in arms:
            config = arm_config(arm, seed, work_dir / f"{arm}-seed{seed}", args.budget, args.replay, base)
            run_dir = run_game(start_run(config), progress=False)
            before, after = read_jsonl(run_dir / "metrics.jsonl")
            results[arm]["perturbed"].append(after["accuracy"]["hard"])
            results[arm]["plain"].append(after["accuracy"]["plain"])
            results[arm]["added"].append(after["pool_size"])
            if arm == arms[0]:
                start["perturbed"].append(before["accuracy"]["hard"])
                start["plain"].append(before["accuracy"]["plain"])
            print(f"seed {seed} {arm:12s} perturbed {after['accuracy']['hard']:.3f} plain "
                  f"{after['accuracy']['plain']:.3f} added {after['pool_size']} ({time.time() - started:.0f}s)",
                  flush=True)
    report = {arm: {"perturbed": summary(r["perturbed"]), "plain": summary(r["plain"]), "added": r["added"]}
              for arm, r in results.items()}
    report["start"] = {"perturbed": summary(start["perturbed"]), "plain": summary(start["plain"])}
    report["settings"] = vars(args) | base | {"out": str(args.out), "work_dir": str(work_dir),
                                       "seconds": round(time.time() - started)}
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for arm in arms:
        print(f"{arm:12s} perturbed {report[arm]['perturbed']['mean']:.3f} ± {report[arm]['perturbed']['std']:.3f}"
              f"   plain {report[arm]['plain']['mean']:.3f} ± {report[arm]['plain']['std']:.3f}")
    print(f"{'start':12s} perturbed {report['start']['perturbed']['mean']:.3f}   plain "
          f"{report['start']['plain']['mean']:.3f}")


if __name__ == "__main__":
    main()
