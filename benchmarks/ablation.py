"""Does RL-targeted data beat untargeted data at an equal budget? Arms of one defence each, on
the embedded world's players, in three regimes, over seeds; resumable.

    python benchmarks/ablation.py --out docs/ablation.json                  # every regime, 3 seeds
    python benchmarks/ablation.py --out docs/ablation.json --regimes plain --seeds 1
    toolduel report docs/ablation.json                                      # the figures

Any other ``--flag value`` is a game setting (as for ``toolduel run``) applied to every arm.

**Regimes** (the FC model every arm starts from):

- ``plain``: the embedded world FC model, warm-started on plain queries only (weak everywhere off plain);
- ``augmented``: the same warm start on plain queries and three perturbation kinds
  (:data:`KNOWN_KINDS`; the usual augmentation), the other four held back (weak there only).
  The query model knows nothing of which kinds are held back.
- ``sparse``: the same warm start on plain queries, every perturbation kind and every
  combination of kinds but those of :data:`HELD_BACK_COMBINATIONS` (every combination holding
  both ``indirect_values`` and ``noisy``, or both ``reordered`` and ``terse``: 10 of 39). The
  query model can write them all; a targeting attack finds where the FC model is still weak.
  Its perturbed held-out set is ``composed`` (every combination), not ``hard``.

**Arms**, per regime and seed, each training that FC model once on ``replay`` plain examples
plus the same number ``budget`` of added examples:

- ``none``: ``budget`` more replayed plain examples;
- ``untargeted``: valid queries of the warm query model (before any RL), whatever the FC model did,
  each asked in a style drawn evenly;
- ``selected``: valid queries of the warm query model that are weaknesses of the FC model
  (selection without RL);
- ``adversarial``: valid queries of the RL-trained query model that are weaknesses of the FC model,
  each asked in a style drawn as the duel's harvest draws it (``harvest_styles``: by default
  targeted, towards the styles where the attack and the harvest so far found weaknesses).

Both query models rewrite the same ``harvest_seeds`` seeds (one query each) and the referee
scores each valid query as the duel does (``fc_samples`` answers at ``fc_temperature``; a
weakness is a query the FC model fails on some answer and, with the solvability floor, gets
right on another); the arms' examples are the first ``budget`` of their kind, so every arm adds
the same number (the smallest supply of the played arms, when one falls short of ``budget``;
recorded as ``added``). Every arm is scored on the same held-out sets: the world's perturbed
queries (``hard``: every kind interleaved, per kind in ``per_kind``), plain queries, and BFCL
categories (transfer). Attack yield: weaknesses per 1,000 FC answers in each harvest
(``yield``), and for the RL model also counting the attack's own answers.

Every step's result is written as soon as it is done under ``--work-dir`` (default: next to
``--out``); run the same command again to continue an interrupted ablation, or with more seeds
to extend it. ``--out`` is rebuilt from every finished arm after each one::

    {"plain": {"arms": {arm: {"perturbed": {"mean", "std", "values"}, "plain": {...}, "held_back": {...},
                              "bfcl": {...}, "sets": {set: {...}}, "added": [...]}},
               "start": {...}, "yield": {"warm": {...}, "rl": {...}, "rl_with_attack": {...}}, "seeds": [...],
               "paired": {"adversarial - untargeted": {"mean", "ci95", "pairs", "items", "per_seed"}, ...}},
     "augmented": {...}, "settings": {...}}

``paired``: arm minus arm on the perturbed held-out set, item by item within each seed, with a
95% bootstrap interval over items; ``toolduel report`` reads an interval that holds 0 as no difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import time
from pathlib import Path

from toolduel import run_files as files
from toolduel.config import ConfigError, flag_overrides, load_config
from toolduel.data import named_sets, replay_samples, seed_samples
from toolduel.duel.attack import run_attack
from toolduel.duel.config import GameConfig
from toolduel.duel.defend import defence_samples, defend
from toolduel.duel.harvest import harvest, harvest_seeds
from toolduel.duel.players import load_chat_model, world_models
from toolduel.evaluate import evaluate
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.specs import attack_spec_counts, specified_seeds
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS, PHRASINGS, kinds_of

ARMS = ("none", "untargeted", "selected", "adversarial")
REGIMES = ("plain", "augmented", "sparse")
KNOWN_KINDS = ("paraphrase", "distractor_numbers", "chatty")  # chosen before any run, never changed
HELD_BACK = tuple(kind for kind in PERTURBATIONS if kind not in KNOWN_KINDS)
# The sparse regime's held-back combinations, chosen before any run, never changed.
HELD_BACK_PAIRS = ({"indirect_values", "noisy"}, {"reordered", "terse"})
HELD_BACK_COMBINATIONS = tuple(c for c in COMBINATIONS if any(pair <= set(kinds_of(c)) for pair in HELD_BACK_PAIRS))
PERTURBED_SET = {"plain": "hard", "augmented": "hard", "sparse": "composed"}
# Settings that change what a finished step means: a resumed ablation must keep them.
FIXED = ("budget", "replay", "harvest_seeds", "attack_steps", "perturbed_limit", "composed_limit", "plain_limit",
         "bfcl", "bfcl_limit", "world_budget", "game")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def game_config(args: argparse.Namespace, seed: int, out: Path) -> GameConfig:
    settings = dict(args.game, out=str(out), seed=seed, rounds=1, world_budget=args.world_budget,
                    attack_steps=args.attack_steps, harvest_seeds=args.harvest_seeds, harvest_keep="valid",
                    pool_budget=None, attack_surface="query")  # the arms compare requests only
    return load_config(GameConfig, overrides=settings)


def regime_phrasings(regime: str) -> tuple[str, ...]:
    """What the regime's FC model was warm-started on."""
    if regime == "augmented":
        return ("plain", *KNOWN_KINDS)
    if regime == "sparse":
        return (*PHRASINGS, *(c for c in COMBINATIONS if c not in HELD_BACK_COMBINATIONS))
    return ("plain",)


def held_back(regime: str) -> tuple[str, ...]:
    """The categories of the regime's perturbed set that its FC model never saw the like of."""
    return HELD_BACK_COMBINATIONS if regime == "sparse" else HELD_BACK


def regime_fc_model(regime: str, args: argparse.Namespace, work: Path) -> Path:
    """The FC model the regime's arms start from: the embedded world's, or its warm start with
    more phrasings (:func:`regime_phrasings`, built once into the work folder)."""
    from toolduel.training.warm_start import build_world_models, get_budget

    if regime == "plain":
        return world_models(args.world_budget).fc_path
    folder = work / regime / "fc_warm_start"
    if not (folder / "build.json").exists():
        phrasings = regime_phrasings(regime)
        log(f"regime {regime}: warm-starting the FC model on {len(phrasings)} phrasings: {', '.join(phrasings)}")
        budget = dataclasses.replace(get_budget(args.world_budget), name=regime, fc_phrasings=",".join(phrasings))
        shutil.rmtree(folder, ignore_errors=True)
        scratch = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(scratch, ignore_errors=True)
        build_world_models(budget, scratch, roles=("fc",))
        scratch.rename(folder)
    return folder / "fc"


def scored(fc_path: Path, folder: Path, args: argparse.Namespace, config: GameConfig, regime: str) -> dict:
    """Accuracy of the FC model in ``fc_path`` on every held-out set (``folder/scores.json``, once):
    ``perturbed`` on the regime's perturbed set, ``held_back`` on its held-back categories."""
    done = folder / "scores.json"
    if done.exists():
        return files.read_json_object(done)
    sets = named_sets("world:hard", args.perturbed_limit) | named_sets("world:plain", args.plain_limit) \
        | named_sets(args.bfcl, args.bfcl_limit)
    if regime == "sparse":
        sets |= named_sets("world:composed", args.composed_limit)
    model = load_chat_model(fc_path, config, name="FC model")
    summaries = {name: evaluate(model, samples, folder / name.replace(":", "_"), GenerationConfig(max_new_tokens=128),
                                batch_size=config.batch_size, progress=False, meta={"set": name})
                 for name, samples in sets.items()}
    close_model(model)
    perturbed = summaries[PERTURBED_SET[regime]]
    per_kind = {kind: c["accuracy"] for kind, c in perturbed["per_category"].items()}
    held = [c for kind, c in perturbed["per_category"].items() if kind in held_back(regime)]
    bfcl = [s for name, s in summaries.items() if name.startswith("bfcl:")]
    result = {"sets": {name: s["accuracy"] for name, s in summaries.items()}, "per_kind": per_kind,
              "perturbed": perturbed["accuracy"], "plain": summaries["plain"]["accuracy"],
              "held_back": sum(c["correct"] for c in held) / max(1, sum(c["n"] for c in held)),
              "bfcl": sum(s["correct"] for s in bfcl) / max(1, sum(s["n"] for s in bfcl)) if bfcl else None}
    files.write_json_atomic(done, result)
    return result


def weakness(record: dict, config: GameConfig) -> bool:
    """A pool record the referee counts as a weakness of the FC model (see the module docstring)."""
    return bool(record["attack_success"]) and (bool(record.get("solvable")) or not config.solvability_floor)


def harvested(name: str, query_path: Path, fc_path: Path, folder: Path, config: GameConfig,
              counts: dict | None = None) -> list[dict]:
    """The valid queries of the query model in ``query_path`` on the harvest seeds, each with the
    FC model's verdicts (``folder/valid.jsonl``, once); the yield goes to ``folder/stats.json``.
    Styles as ``config.harvest_styles`` says, from the attack's ``counts``."""
    if (folder / "stats.json").exists():
        return files.read_jsonl(folder / "valid.jsonl")
    seeds = harvest_seeds(config, 1)
    query_model = load_chat_model(query_path, config, name=f"{name} query model")
    fc_model = load_chat_model(fc_path, config, name="FC model")
    try:
        valid, stats = harvest(config, 1, seeds, query_model, fc_model, name, str(fc_path), folder, counts=counts)
    finally:
        close_model(query_model)
        close_model(fc_model)
    failing = sum(weakness(record, config) for record in valid)
    answers = sum(record.get("fc_answers", len(record["verdicts"])) for record in valid)  # older records: k each
    stats |= {"answers": answers, "failing": failing, "yield": 1000 * failing / max(1, answers)}
    files.write_jsonl_atomic(folder / "valid.jsonl", valid)
    files.write_json_atomic(folder / "stats.json", stats)
    log(f"{folder}: {len(valid)} valid of {len(seeds)}, {failing} failing ({stats['yield']:.0f} per 1,000 answers)")
    return valid


def attacked(query_path: Path, fc_path: Path, folder: Path, config: GameConfig) -> Path:
    """The query model after ``attack_steps`` of GRPO against the FC model (``folder``, once)."""
    if (folder / "done.json").exists():
        return folder / files.QUERY_MODEL
    shutil.rmtree(folder, ignore_errors=True)
    seeds = specified_seeds(config, seed_samples(config.seeds, config.attack_steps * config.attack_prompts_per_step,
                                              "attack-1", config.seed), "attack-1")
    fc_model = load_chat_model(fc_path, config, name="FC model")
    started = time.time()
    result = run_attack(config, seeds, fc_model, query_path, folder, progress=False, on_log=lambda _: None)
    close_model(fc_model)
    answers = config.attack_steps * config.attack_prompts_per_step * config.num_generations * config.fc_samples
    files.write_json_atomic(folder / "done.json", {"steps": result.steps, "fc_answers": answers,
                                                   "seconds": round(time.time() - started)})
    return result.query_path


def arm_examples(arm: str, warm: list[dict], rl: list[dict], config: GameConfig) -> list[dict]:
    return {"none": [], "untargeted": warm, "selected": [r for r in warm if weakness(r, config)],
            "adversarial": [r for r in rl if weakness(r, config)]}[arm]


def play_seed(regime: str, seed: int, fc_path: Path, args: argparse.Namespace, work: Path) -> None:
    folder = work / regime / f"seed{seed}"
    if all((folder / f"arm-{arm}" / "result.json").exists() for arm in args.arms):
        return
    config = game_config(args, seed, folder)
    world = world_models(args.world_budget)
    started = time.time()
    untargeted = dataclasses.replace(config, harvest_styles="uniform")
    warm = harvested("warm", world.query_path, fc_path, folder / "warm_harvest", untargeted)
    rl: list[dict] = []
    if "adversarial" in args.arms:
        rl_query = attacked(world.query_path, fc_path, folder / "attack", config)
        rl = harvested("rl", rl_query, fc_path, folder / "rl_harvest", config, attack_spec_counts(folder / "attack"))
    supply = {arm: len(arm_examples(arm, warm, rl, config)) for arm in args.arms if arm != "none"}
    budget = min([args.budget, *supply.values()])
    if budget < args.budget:
        log(f"{regime} seed {seed}: only {budget} added examples per arm (supply {supply}); raise --harvest-seeds")
    for arm in args.arms:
        arm_dir = folder / f"arm-{arm}"
        if (arm_dir / "result.json").exists():
            continue
        arm_started = time.time()
        pool = arm_examples(arm, warm, rl, config)[:budget]
        replay = replay_samples(config.seeds, args.replay + (budget if arm == "none" else 0), "replay-1", seed)
        samples = defence_samples(pool, replay, seed=seed + 1)
        model_dir = arm_dir / files.FC_MODEL
        shutil.rmtree(model_dir, ignore_errors=True)
        defend(config, fc_path, samples, arm_dir, save_to=model_dir)
        result = scored(model_dir, arm_dir / "eval", args, config, regime) | {
            "added": len(pool), "replayed": len(replay), "seconds": round(time.time() - arm_started)}
        files.write_json_atomic(arm_dir / "result.json", result)
        shutil.rmtree(model_dir)  # 0.5 GB a model; the scores and every answer stay
        shutil.rmtree(arm_dir / files.TRAINER, ignore_errors=True)
        log(f"{regime} seed {seed} {arm:11s} perturbed {result['perturbed']:.3f} held back {result['held_back']:.3f} "
            f"plain {result['plain']:.3f} bfcl {result['bfcl'] if result['bfcl'] is None else round(result['bfcl'], 3)}"
            f" ({result['seconds']}s)")
    files.write_json_atomic(folder / "seed.json", {"seconds": round(time.time() - started), "budget": budget,
                                                  "supply": supply})


# Paired comparisons in the JSON: (arm, against) on the perturbed held-out set.
PAIRS = (("adversarial", "untargeted"), ("adversarial", "selected"), ("selected", "untargeted"), ("untargeted", "none"),
         ("adversarial", "none"))


def item_scores(arm_dir: Path, name: str, categories: tuple[str, ...] | None = None) -> dict[str, int]:
    """1 or 0 per held-out item (by id) of an arm's evaluation of set ``name`` (of ``categories`` only)."""
    return {r["id"]: int(bool(r["valid"])) for r in files.read_jsonl(arm_dir / "eval" / name / files.RESULTS)
            if categories is None or r.get("category") in categories}


def paired(work: Path, regime: str, arm: str, against: str, resamples: int = 10_000,
           categories: tuple[str, ...] | None = None) -> dict | None:
    """``arm`` minus ``against`` on the same perturbed held-out items (of ``categories``, e.g. the
    held-back ones) and seeds: the mean difference over the (seed, item) pairs, the difference per
    seed, and a 95% percentile interval from a bootstrap over items (an item is drawn with all its
    seeds: the seeds share the items, so pairs of one item are not independent)."""
    by_item: dict[str, list[int]] = {}
    per_seed = []
    for seed_dir in sorted(work.glob(f"{regime}/seed*")):
        if not all((seed_dir / f"arm-{a}" / "result.json").exists() for a in (arm, against)):
            continue
        name = PERTURBED_SET[regime]
        ours = item_scores(seed_dir / f"arm-{arm}", name, categories)
        theirs = item_scores(seed_dir / f"arm-{against}", name, categories)
        seed_differences = {item: ours[item] - theirs[item] for item in ours if item in theirs}
        for item, difference in seed_differences.items():
            by_item.setdefault(item, []).append(difference)
        per_seed.append(statistics.fmean(seed_differences.values()))
    result = bootstrap_pairs(by_item, resamples)
    return None if result is None else result | {"per_seed": per_seed}


def bootstrap_pairs(by_item: dict[str, list[int]], resamples: int = 10_000) -> dict | None:
    """The mean of paired differences (``by_item``: each item's differences, one per seed) with a
    95% percentile interval from a bootstrap over items, an item drawn with all its seeds."""
    pairs = sum(len(d) for d in by_item.values())
    if pairs < 2:
        return None
    sums, counts = [sum(d) for d in by_item.values()], [len(d) for d in by_item.values()]
    rng, indices = random.Random(0), range(len(sums))
    means = sorted(sum(sums[i] for i in drawn) / sum(counts[i] for i in drawn)
                   for drawn in (rng.choices(indices, k=len(sums)) for _ in range(resamples)))
    return {"mean": sum(sums) / pairs, "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
            "pairs": pairs, "items": len(sums)}


def summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def collect(work: Path, args: argparse.Namespace) -> dict:
    """The ablation's JSON from every finished step in the work folder."""
    report: dict = {"settings": {key: getattr(args, key) for key in FIXED} | {"work_dir": str(work)}}
    for regime in REGIMES:
        seeds = sorted(work.glob(f"{regime}/seed*/arm-*/result.json"))
        if not seeds:
            continue
        arms: dict[str, dict[str, list]] = {}
        for path in seeds:
            arm = path.parent.name.removeprefix("arm-")
            result = files.read_json_object(path)
            values = arms.setdefault(arm, {"seeds": []})
            values["seeds"].append(int(path.parent.parent.name.removeprefix("seed")))
            for key in ("perturbed", "plain", "held_back", "bfcl", "added"):
                values.setdefault(key, []).append(result[key])
            for name, accuracy in {**result["sets"], **{f"kind:{k}": v for k, v in result["per_kind"].items()}}.items():
                values.setdefault("sets", {}).setdefault(name, []).append(accuracy)
        section: dict = {"arms": {}, "yield": {}}
        for arm in ARMS:
            if arm not in arms:
                continue
            values = arms[arm]
            section["arms"][arm] = {key: summary(values[key]) for key in ("perturbed", "plain", "held_back")} | {
                "bfcl": summary(values["bfcl"]) if None not in values["bfcl"] else None,
                "sets": {name: summary(v) for name, v in sorted(values["sets"].items())},
                "added": values["added"], "seeds": values["seeds"]}
        start = work / regime / "start" / "scores.json"
        if start.exists():
            section["start"] = files.read_json_object(start)
        for name in ("warm", "rl"):
            stats = [files.read_json_object(p) for p in sorted(work.glob(f"{regime}/seed*/{name}_harvest/stats.json"))]
            if stats:
                section["yield"][name] = summary([s["yield"] for s in stats])
        with_attack = []
        for attack in sorted(work.glob(f"{regime}/seed*/attack/done.json")):
            stats_path = attack.parent.parent / "rl_harvest" / "stats.json"
            if stats_path.exists():
                stats = files.read_json_object(stats_path)
                spent = stats["answers"] + files.read_json_object(attack)["fc_answers"]
                with_attack.append(1000 * stats["failing"] / max(1, spent))
        if with_attack:
            section["yield"]["rl_with_attack"] = summary(with_attack)
        section["paired"] = {f"{arm} - {against}": result for arm, against in PAIRS
                             if (result := paired(work, regime, arm, against)) is not None}
        section["paired_held_back"] = {f"{arm} - {against}": result for arm, against in PAIRS if (
            result := paired(work, regime, arm, against, categories=held_back(regime))) is not None}
        section["seconds_per_seed"] = [files.read_json_object(p)["seconds"]
                                       for p in sorted(work.glob(f"{regime}/seed*/seed.json"))]
        report[regime] = section
    return report


def check_resume(work: Path, args: argparse.Namespace, keys: tuple[str, ...] = FIXED, what: str = "an ablation") -> None:
    """A work folder keeps the settings (``keys`` of ``args``) of its first run: a resume with
    others would mix results."""
    path = work / "settings.json"
    fixed = {key: getattr(args, key) for key in keys}
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in keys if before.get(key) != fixed[key])
        if changed:
            raise SystemExit(f"{work} holds {what} with other settings ({', '.join(changed)}); "
                             f"use another --work-dir, or the same settings to continue it")
    else:
        work.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(path, fixed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the ablation's JSON")
    parser.add_argument("--work-dir", type=Path, default=None, help="every step's results (default: <out>.work)")
    parser.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated: plain, augmented, sparse")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--budget", type=int, default=32, help="added examples per arm")
    parser.add_argument("--replay", type=int, default=64, help="replayed plain examples in every arm")
    parser.add_argument("--harvest-seeds", type=int, default=256, help="seeds each query model rewrites")
    parser.add_argument("--attack-steps", type=int, default=8)
    parser.add_argument("--perturbed-limit", type=int, default=112, help="held-out perturbed queries (16 per kind)")
    parser.add_argument("--composed-limit", type=int, default=None,
                        help="held-out composed queries, sparse regime (default: all, 8 per combination)")
    parser.add_argument("--plain-limit", type=int, default=48)
    parser.add_argument("--bfcl", default="bfcl:simple_python,multiple,irrelevance", help="transfer sets ('' for none)")
    parser.add_argument("--bfcl-limit", type=int, default=16, help="samples per BFCL category")
    parser.add_argument("--world-budget", default="default")
    args, extra = parser.parse_known_args()
    for name, choices in (("regimes", REGIMES), ("arms", ARMS)):
        chosen = [c.strip() for c in getattr(args, name).split(",") if c.strip()]
        if not chosen or set(chosen) - set(choices):
            parser.error(f"--{name} takes a comma-separated subset of {', '.join(choices)} (got {getattr(args, name)!r})")
        setattr(args, name, [c for c in choices if c in chosen])
    try:
        args.game = flag_overrides(extra, GameConfig)
        game_config(args, 0, Path("."))
    except ConfigError as err:
        parser.error(str(err))
    return args


def main() -> None:
    args = parse_args()
    work = args.work_dir or args.out.with_suffix(".work")
    check_resume(work, args)
    started = time.time()
    for regime in args.regimes:
        fc_path = regime_fc_model(regime, args, work)
        scored(fc_path, work / regime / "start", args, game_config(args, 0, work / regime), regime)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            play_seed(regime, seed, fc_path, args, work)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            files.write_json_atomic(args.out, collect(work, args))
    report = collect(work, args)
    files.write_json_atomic(args.out, report)
    for regime in args.regimes:
        section = report.get(regime, {})
        for arm, values in section.get("arms", {}).items():
            log(f"{regime:9s} {arm:11s} perturbed {values['perturbed']['mean']:.3f} ± {values['perturbed']['std']:.3f}"
                f"  held back {values['held_back']['mean']:.3f}  plain {values['plain']['mean']:.3f}")
    log(f"done in {time.time() - started:.0f}s; {args.out}")


if __name__ == "__main__":
    main()
