"""Is the game worth more than its rounds? Several rounds of the duel against as many rounds of
untargeted augmentation, adding the same number of examples each round, from the same FC model;
resumable.

    python benchmarks/game.py --out docs/game-sparse.json                 # 3 rounds, 3 seeds
    python benchmarks/game.py --out docs/game-sparse.json --seeds 1       # one seed

Any other ``--flag value`` is a game setting (as for ``toolduel run``) applied to both arms.

Both arms are ``toolduel run`` (:func:`toolduel.duel.loop.run_game`, guard and replay included)
from the sparse-weakness regime's FC model (``benchmarks/ablation.py``: warm-started on every
perturbation and combination but the held-back ones; built once into the work folder unless
``--fc-model`` names it), with at most ``--pool-budget`` examples added per round:

- ``duel``: the query model attacks (``--attack-steps`` GRPO steps a round, carried over the
  rounds), the harvest keeps its weaknesses, styles targeted, drawn over the success bands;
- ``untargeted``: no attack; the warm query model's valid queries, styles drawn evenly, the
  first ones harvested whatever the FC model answered.

Every round each arm is scored on the whole held-out ``composed`` set (every combination of
perturbations, the regime's perturbed set); after the last, the final FC models also on plain
queries and BFCL categories. ``paired`` holds duel minus untargeted on the same composed items
and seeds, per round, with a 95% bootstrap interval over items; ``added`` the examples each arm
added per round (the duel's fall short where its harvest found fewer weaknesses than the budget:
untargeted then trains on more, never fewer).

Every finished run stays under ``--work-dir`` (default: next to ``--out``); run the same command
again to continue an interrupted benchmark, or with more seeds to extend it. ``--out`` is
rebuilt after every run::

    {"settings": {...}, "start": {...},
     "arms": {arm: {"composed": [[round 0 .. R] per seed], "added": [[round 1 .. R] per seed],
                    "kept": [...], "final": {"plain": {...}, "bfcl": {...}}, "seconds": [...]}},
     "paired": {"round r": {"mean", "ci95", "pairs", "items", "per_seed"}}}
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ablation import bootstrap_pairs, check_resume, regime_fc_model, summary  # benchmarks/ is this script's folder

from toolduel import run_files as files
from toolduel.config import ConfigError, flag_overrides, load_config
from toolduel.data import named_sets
from toolduel.duel.config import GameConfig
from toolduel.duel.loop import resume_run, run_game, start_run
from toolduel.duel.players import load_chat_model
from toolduel.evaluate import evaluate
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig

ARMS = ("duel", "untargeted")
PERTURBED = "composed"
# Settings that change what a finished run means: a resumed benchmark must keep them.
FIXED = ("rounds", "pool_budget", "harvest_seeds", "attack_steps", "composed_limit", "plain_limit", "bfcl", "bfcl_limit",
         "world_budget", "fc_model", "game")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def arm_config(arm: str, args: argparse.Namespace, seed: int, fc_path: Path, out: Path) -> GameConfig:
    settings = dict(args.game, out=str(out), seed=seed, rounds=args.rounds, world_budget=args.world_budget,
                    fc_model=str(fc_path), attack_steps=args.attack_steps, harvest_seeds=args.harvest_seeds,
                    pool_budget=args.pool_budget, attack_surface="query",  # the composed set asks about requests
                    heldout=f"world:{PERTURBED}", extra_eval=None,
                    after_defence_attack=False)  # the benchmark's question is the held-out accuracy
    if arm == "untargeted":
        settings |= {"attack_steps": 0, "harvest_keep": "valid", "harvest_styles": "uniform"}
    # the composed set's limit may be None (all of it), which load_config's overrides take for "not given"
    return dataclasses.replace(load_config(GameConfig, overrides=settings), heldout_limit=args.composed_limit)


def played(arm: str, args: argparse.Namespace, seed: int, fc_path: Path, folder: Path) -> Path:
    """The arm's run in ``folder``, played (or resumed) to its end."""
    if (folder / files.CONFIG).exists():
        run = resume_run(folder)
        if run.done("finish"):
            return folder
        log(f"seed {seed} {arm}: resuming after {', '.join(run.state['completed'][-1:]) or 'nothing'}")
    else:
        log(f"seed {seed} {arm}: {args.rounds} rounds")
        run = start_run(arm_config(arm, args, seed, fc_path, folder))
    started = time.time()
    run_game(run, progress=False)
    log(f"seed {seed} {arm}: done in {time.time() - started:.0f}s")
    return folder


def final_scores(folder: Path, args: argparse.Namespace) -> dict:
    """The final FC model's accuracy on plain queries and BFCL (``final_scores.json``, once)."""
    done = folder / "final_scores.json"
    if done.exists():
        return files.read_json_object(done)
    config = resume_run(folder).config
    sets = named_sets("world:plain", args.plain_limit) | named_sets(args.bfcl, args.bfcl_limit)
    model = load_chat_model(folder / files.FINAL_FC_MODEL, config, name="final FC model")
    summaries = {name: evaluate(model, samples, folder / "final_eval" / name.replace(":", "_"),
                                GenerationConfig(max_new_tokens=128), batch_size=config.batch_size, progress=False,
                                meta={"set": name}) for name, samples in sets.items()}
    close_model(model)
    bfcl = [s for name, s in summaries.items() if name.startswith("bfcl:")]
    result = {"plain": summaries["plain"]["accuracy"],
              "bfcl": sum(s["correct"] for s in bfcl) / max(1, sum(s["n"] for s in bfcl)) if bfcl else None}
    files.write_json_atomic(done, result)
    return result


def item_scores(folder: Path, round_index: int) -> dict[str, int]:
    """1 or 0 per composed item (by id) in the round's evaluation."""
    path = files.round_dir(folder, round_index) / files.EVAL / PERTURBED / files.RESULTS
    return {r["id"]: int(bool(r["valid"])) for r in files.read_jsonl(path)}


def finished_seeds(work: Path) -> list[Path]:
    return [d for d in sorted(work.glob("seed*")) if all((d / arm / "final_scores.json").exists() for arm in ARMS)]


def collect(work: Path, args: argparse.Namespace) -> dict:
    """The benchmark's JSON from every finished seed in the work folder."""
    report: dict = {"settings": {key: getattr(args, key) for key in FIXED} | {"work_dir": str(work)}, "arms": {}}
    seeds = finished_seeds(work)
    for arm in ARMS:
        values: dict = {"seeds": [], "composed": [], "added": [], "kept": [], "seconds": [],
                        "plain": [], "bfcl": []}
        for seed_dir in seeds:
            metrics = files.read_jsonl(seed_dir / arm / files.METRICS)
            values["seeds"].append(int(seed_dir.name.removeprefix("seed")))
            values["composed"].append([m["accuracy"][PERTURBED] for m in metrics])
            values["added"].append([m.get("pool_added") for m in metrics[1:]])
            values["kept"].append([m.get("guard", {}).get("kept") for m in metrics[1:]])
            values["seconds"].append(round(sum(sum(m["seconds"].values()) for m in metrics)))
            final = files.read_json_object(seed_dir / arm / "final_scores.json")
            values["plain"].append(final["plain"])
            values["bfcl"].append(final["bfcl"])
        report["arms"][arm] = values | {"final": {
            "composed": summary([c[-1] for c in values["composed"]]) if seeds else None,
            "plain": summary(values["plain"]) if seeds else None,
            "bfcl": summary(values["bfcl"]) if seeds and None not in values["bfcl"] else None}}
    report["paired"] = {}
    for round_index in range(args.rounds + 1):
        by_item: dict[str, list[int]] = {}
        per_seed = []
        for seed_dir in seeds:
            ours, theirs = (item_scores(seed_dir / arm, round_index) for arm in ARMS)
            differences = {item: ours[item] - theirs[item] for item in ours if item in theirs}
            for item, difference in differences.items():
                by_item.setdefault(item, []).append(difference)
            per_seed.append(sum(differences.values()) / max(1, len(differences)))
        result = bootstrap_pairs(by_item)
        if result is not None:
            report["paired"][f"round {round_index}"] = result | {"per_seed": per_seed}
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the benchmark's JSON")
    parser.add_argument("--work-dir", type=Path, default=None, help="every run (default: <out>.work)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-budget", type=int, default=32, help="examples each arm adds per round, at most")
    parser.add_argument("--harvest-seeds", type=int, default=256, help="seeds each harvest rewrites")
    parser.add_argument("--attack-steps", type=int, default=8, help="the duel's GRPO steps per round")
    parser.add_argument("--fc-model", default=None, help="the FC model both arms start from (default: the sparse "
                                                         "regime's warm start, built into the work folder)")
    parser.add_argument("--composed-limit", type=int, default=None, help="held-out composed queries (default: all, "
                                                                          "8 per combination)")
    parser.add_argument("--plain-limit", type=int, default=48)
    parser.add_argument("--bfcl", default="bfcl:simple_python,multiple,irrelevance", help="transfer sets ('' for none)")
    parser.add_argument("--bfcl-limit", type=int, default=16, help="samples per BFCL category")
    parser.add_argument("--world-budget", default="default")
    args, extra = parser.parse_known_args(argv)
    try:
        args.game = flag_overrides(extra, GameConfig)
        arm_config("duel", args, 0, Path(args.fc_model or "."), Path("."))
    except ConfigError as err:
        parser.error(str(err))
    return args


def main() -> None:
    args = parse_args()
    work = args.work_dir or args.out.with_suffix(".work")
    check_resume(work, args, FIXED, "a game benchmark")
    fc_path = Path(args.fc_model) if args.fc_model else regime_fc_model("sparse", args, work)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arm in ARMS:
            folder = played(arm, args, seed, fc_path, work / f"seed{seed}" / arm)
            final_scores(folder, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(args.out, collect(work, args))
    report = collect(work, args)
    files.write_json_atomic(args.out, report)
    for arm, values in report["arms"].items():
        log(f"{arm:10s} composed per round {values['composed']}  added {values['added']}  plain {values['plain']}")
    for name, result in report["paired"].items():
        log(f"duel - untargeted, {name}: {result['mean']:+.3f} [{result['ci95'][0]:+.3f}, {result['ci95'][1]:+.3f}]")


if __name__ == "__main__":
    main()
