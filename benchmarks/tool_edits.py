"""Tool edits drawn or written: does the warm query model write edits the referee accepts, and do
they find as many weaknesses as the world's drawn moves?

    python benchmarks/tool_edits.py --out docs/tool-edits.json --work-dir runs/tool-edits

The embedded world's warm starts (the query model's rows teach the edit grammar on a quarter of
them) rewrite the same fresh ``world:train`` seeds with the same specs (a style and a tool move,
drawn evenly from one stream) twice against the warm FC model: ``drawn``, the move applied by the
world as the duel's default does, and ``written``, the query model asked for the move and writing
the edits after its request (``--tool-edits written``). Per arm and per move: validity, the
reasons written edits were refused, and weaknesses (valid, answerable failing queries) per 1,000
FC answers; written over drawn with a 95% bootstrap interval over seeds. Each arm's rows are
written as they complete, so a cut run continues from the arm it was in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

from tool_surface import ratio_interval, yields  # benchmarks/ is this script's folder

from toolduel import run_files as files
from toolduel.data import WORLD_TRAIN, seed_samples
from toolduel.duel.config import GameConfig
from toolduel.duel.harvest import attack_records
from toolduel.duel.players import load_chat_model
from toolduel.models import close_model
from toolduel.referee.outcome import written_parts
from toolduel.training.warm_start import ensure_world_models
from toolduel.world.tool_edits import UNCHANGED

ARMS = ("drawn", "written")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def arm_rows(arm: str, config: GameConfig, seeds: list, work: Path) -> list[dict]:
    """One row per seed: its move and style, validity and reasons, whether it was a weakness, the
    FC answers it took, and what the query model wrote."""
    path = work / f"{arm}.jsonl"
    if path.exists():
        return files.read_jsonl(path)
    config = dataclasses.replace(config, tool_edits=arm)
    world = ensure_world_models(config.world_budget)
    query_model = load_chat_model(world.query_path, config, name="warm query model")
    fc_model = load_chat_model(world.fc_path, config, name="warm FC model")
    try:
        outcomes, _, asked = attack_records(config, 1, seeds, query_model, fc_model, stream="tool-edits")
    finally:
        close_model(query_model)
        close_model(fc_model)
    rows = [{"move": o.tool_move or UNCHANGED, "style": o.style, "valid": o.valid, "reasons": o.reasons,
             "weakness": o.weakness(config.solvability_floor), "answers": o.fc_answers,
             "edits": written_parts(seed, o.query)[1], "completion": o.query} for seed, o in zip(asked, outcomes)]
    files.write_jsonl_atomic(path, rows)
    return rows


def summary(rows: list[dict]) -> dict:
    asked, valid = Counter(r["move"] for r in rows), Counter(r["move"] for r in rows if r["valid"])
    wrote = Counter(r["move"] for r in rows if r["edits"])
    per_move = {move: {"queries": asked[move], "valid": valid[move], "wrote_edits": wrote[move]} for move in asked}
    refused = Counter(reason.split(":", 1)[0] for row in rows for reason in row["reasons"])
    return {"validity": sum(r["valid"] for r in rows) / max(1, len(rows)), "per_move": dict(sorted(per_move.items())),
            "refused": dict(refused.most_common()), "yield": yields(rows)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--work-dir", type=Path, required=True, help="each arm's rows, kept to resume")
    parser.add_argument("--seeds", type=int, default=128, help="fresh world:train seeds, the same in both arms")
    parser.add_argument("--world-budget", default="default", help="the warm starts to use (test: tiny, for tests)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    config = GameConfig(world_budget=args.world_budget, attack_surface="query,tools", harvest_styles="uniform",
                        out=str(args.work_dir))
    seeds = seed_samples(WORLD_TRAIN, args.seeds, "tool-edits", config.seed)
    rows = {}
    for arm in ARMS:
        log(f"{arm}: {len(seeds)} seeds")
        rows[arm] = arm_rows(arm, config, seeds, args.work_dir)
    result = {"seeds": len(seeds), "world_budget": args.world_budget, "fc_samples": config.fc_samples,
              **{arm: summary(rows[arm]) for arm in ARMS}}
    drawn = result["drawn"]["yield"]["all"]["per_1000_answers"]
    result["written_over_drawn"] = result["written"]["yield"]["all"]["per_1000_answers"] / drawn if drawn else None
    result["written_over_drawn_ci95"] = ratio_interval(rows["written"], rows["drawn"])
    result["examples"] = [row["completion"] for row in rows["written"] if row["edits"]][:8]
    files.write_json_atomic(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
