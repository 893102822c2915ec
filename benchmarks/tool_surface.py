"""The tool list as an attack surface: what a duel with ``--attack-surface query,tools`` did.

    toolduel run --attack-surface query,tools --heldout world:plain,hard,tools --heldout-limit 100 --out RUN
    python benchmarks/tool_surface.py --run RUN --out docs/tool-surface.json

From a finished duel's folder (the run's files are only read; everything this script computes
goes under ``RUN/tool-surface/``, each step written as it completes, so a cut run continues):

- **held-out sets**: each set the duel evaluated, round 0 (the FC model before any defence)
  against the last round, with the last minus round 0 on the same items and a 95% bootstrap
  interval over items, and the accuracy per category (for ``tools``, per move);
- **BFCL** (``--bfcl``): the round-0 and the final FC model on BFCL sets (by default
  ``multiple``, ``parallel_multiple`` and ``multiple+distractors``), paired the same way;
- **attack yield per surface** (``--yield-seeds``): the warm query model (round 0's) and the
  round-1 query model (after its GRPO attack) rewrite the same fresh seeds with the same specs
  (styles and tool moves drawn evenly, one stream) against the round-0 FC model; per tool move,
  valid answerable failing queries per 1,000 FC answers (the answers on the seed's own list
  that show a query answerable counted too), and RL over warm with a bootstrap interval over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

from generation import paired_difference  # benchmarks/ is this script's folder

from toolduel import run_files as files
from toolduel.data import named_sets, seed_samples
from toolduel.duel.harvest import attack_records
from toolduel.duel.loop import resume_run
from toolduel.duel.players import load_chat_model
from toolduel.evaluate import evaluate
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.world.tool_edits import UNCHANGED

RESAMPLES = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bootstrap(ours: dict[str, int], theirs: dict[str, int]) -> dict:
    """``ours`` minus ``theirs`` (1/0 per item id) on the items both hold, with a 95% percentile
    interval from a bootstrap over items (:func:`generation.paired_difference`)."""
    items = sorted(set(ours) & set(theirs))
    return paired_difference([ours[i] for i in items], [theirs[i] for i in items]) | {"items": len(items)}


def item_scores(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """1/0 per item of an evaluation folder, and each item's category."""
    records = files.read_jsonl(folder / files.RESULTS)
    return {r["id"]: int(bool(r["valid"])) for r in records}, {r["id"]: str(r.get("category")) for r in records}


def compared(before: Path, after: Path) -> dict:
    """Accuracy before and after, the paired difference, and both per category."""
    ours, categories = item_scores(after)
    theirs, _ = item_scores(before)
    per_category = {}
    for category in sorted(set(categories.values())):
        ids = [i for i, c in categories.items() if c == category and i in theirs]
        per_category[category] = {"n": len(ids), "before": sum(theirs[i] for i in ids) / len(ids),
                                  "after": sum(ours[i] for i in ids) / len(ids)}
    return {"before": sum(theirs.values()) / len(theirs), "after": sum(ours.values()) / len(ours),
            "after_minus_before": bootstrap(ours, theirs), "per_category": per_category}


def heldout(run_dir: Path, last: int) -> dict:
    sets = sorted(p.name for p in (files.round_dir(run_dir, 0) / files.EVAL).iterdir() if p.is_dir())
    return {name: compared(files.round_dir(run_dir, 0) / files.EVAL / name,
                           files.round_dir(run_dir, last) / files.EVAL / name) for name in sets}


def bfcl(run, args: argparse.Namespace, work: Path) -> dict:
    models = {"round_0": files.round_dir(run.dir, 0) / files.FC_MODEL, "final": run.dir / files.FINAL_FC_MODEL}
    sets = named_sets("bfcl:" + args.bfcl, args.bfcl_limit)
    for label, path in models.items():
        todo = [name for name in sets if not (work / label / name.replace(":", "_") / files.SUMMARY).exists()]
        if not todo:
            continue
        model = load_chat_model(path, run.config, name=f"FC model ({label})")
        for name in todo:
            log(f"bfcl: {label} on {name}")
            evaluate(model, sets[name], work / label / name.replace(":", "_"), GenerationConfig(max_new_tokens=128),
                     batch_size=run.config.batch_size, resume=True, progress=False, meta={"set": name})
        close_model(model)
    return {name: compared(work / "round_0" / name.replace(":", "_"), work / "final" / name.replace(":", "_"))
            for name in sets}


def harvest_yield(run, label: str, query_path: Path, seeds: list, work: Path) -> list[dict]:
    """One row per seed: its tool move, whether the query was a weakness, and the FC answers it took."""
    path = work / f"yield-{label}.jsonl"
    if path.exists():
        return files.read_jsonl(path)
    config = dataclasses.replace(run.config, harvest_styles="uniform")
    query_model = load_chat_model(query_path, config, name=f"{label} query model")
    fc_model = load_chat_model(files.round_dir(run.dir, 0) / files.FC_MODEL, config, name="FC model (round 0)")
    try:
        outcomes, _, _ = attack_records(config, 1, seeds, query_model, fc_model, stream="tool-yield")
    finally:
        close_model(query_model)
        close_model(fc_model)
    rows = [{"move": o.tool_move or UNCHANGED, "style": o.style, "valid": o.valid,
             "weakness": o.weakness(config.solvability_floor), "answers": o.fc_answers}
            for o in outcomes]
    files.write_jsonl_atomic(path, rows)
    return rows


def yields(rows: list[dict]) -> dict:
    per_move: dict[str, dict] = {}
    for row in rows:
        entry = per_move.setdefault(row["move"], {"queries": 0, "weaknesses": 0, "answers": 0})
        entry["queries"] += 1
        entry["weaknesses"] += row["weakness"]
        entry["answers"] += row["answers"]
    total = {key: sum(e[key] for e in per_move.values()) for key in ("queries", "weaknesses", "answers")}
    for entry in [*per_move.values(), total]:
        entry["per_1000_answers"] = 1000 * entry["weaknesses"] / max(1, entry["answers"])
    return {"all": total, "per_move": dict(sorted(per_move.items()))}


def ratio_interval(rl: list[dict], warm: list[dict], resamples: int = RESAMPLES) -> list[float] | None:
    """A 95% bootstrap interval over seeds of RL's yield over warm's (the same seeds and specs)."""
    rng, indices, ratios = random.Random(0), range(len(rl)), []
    for _ in range(resamples):
        drawn = rng.choices(indices, k=len(rl))
        warm_yield = sum(warm[i]["weakness"] for i in drawn) / max(1, sum(warm[i]["answers"] for i in drawn))
        rl_yield = sum(rl[i]["weakness"] for i in drawn) / max(1, sum(rl[i]["answers"] for i in drawn))
        if warm_yield > 0:
            ratios.append(rl_yield / warm_yield)
    ratios.sort()
    return [ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]] if ratios else None


def attack_yield(run, args: argparse.Namespace, work: Path) -> dict:
    seeds = seed_samples(run.config.seeds, args.yield_seeds, "tool-yield", run.config.seed)
    warm = harvest_yield(run, "warm", files.round_dir(run.dir, 0) / files.QUERY_MODEL, seeds, work)
    rl = harvest_yield(run, "rl", files.round_dir(run.dir, 1) / files.QUERY_MODEL, seeds, work)
    result = {"seeds": len(seeds), "warm": yields(warm), "rl": yields(rl)}
    warm_all = result["warm"]["all"]["per_1000_answers"]
    result["rl_over_warm"] = result["rl"]["all"]["per_1000_answers"] / warm_all if warm_all else None
    result["rl_over_warm_ci95"] = ratio_interval(rl, warm)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished duel's folder")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--bfcl", default="multiple,parallel_multiple,multiple+distractors",
                        help="BFCL categories to score the round-0 and the final FC model on ('' for none)")
    parser.add_argument("--bfcl-limit", type=int, default=50)
    parser.add_argument("--yield-seeds", type=int, default=128, help="seeds for the attack yield (0: none)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    run = resume_run(args.run)
    if "finish" not in run.state["completed"]:
        raise SystemExit(f"{args.run}: the duel has not finished (resume it first: toolduel run --resume {args.run})")
    work = args.run / "tool-surface"
    last = max(r for r in range(run.config.rounds + 1) if (files.round_dir(run.dir, r) / files.EVAL).exists())
    result = {"run": str(args.run), "rounds": last, "attack_surface": run.config.surface(),
              "heldout": heldout(run.dir, last)}
    files.write_json_atomic(args.out, result)
    if args.bfcl:
        result["bfcl"] = bfcl(run, args, work)
        files.write_json_atomic(args.out, result)
    if args.yield_seeds:
        result["yield"] = attack_yield(run, args, work)
        files.write_json_atomic(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
