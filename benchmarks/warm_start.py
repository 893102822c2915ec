"""The embedded default's warm starts (SmolLM2-135M-Instruct on the world): time and quality.

    python benchmarks/warm_start.py --threads 2 --out runs/warm_start.json                  # the default budget
    python benchmarks/warm_start.py --roles fc --train-layers 30 --out runs/fc_full.json     # a variant
    python benchmarks/warm_start.py --evaluate heldout --out runs/warm_start_heldout.json   # report, once
    python benchmarks/warm_start.py --roles fc --fc-phrasings all --workdir runs/reference  # a solving judge
    python benchmarks/warm_start.py --measure "$TOOLDUEL_CACHE/world/world-v..." --evaluate heldout  # a built pair

It builds both players exactly as ``toolduel world build`` does (``build_world_models``), with
the budget's settings or the variant's overrides, into ``--workdir`` (default: a temporary
folder), and measures them:

- ``--evaluate validation`` (the default, for choosing settings): the FC model on requests drawn
  from the world's *train* split with seeds no training data uses (96 one-call, 32 two-call,
  32 no-call, plain), greedy; the query model's samples for 24 such seeds in every style, at
  temperatures 0.7 and 1.0, through the rule check (valid rate, per style).
- ``--evaluate heldout``: the FC model on the held-out sets (plain, hard, two_call, no_call: 100
  each; every perturbation kind: 50), and the query model as above. For reporting a chosen
  recipe once; never for choosing one.

``--measure FOLDER`` skips the build and measures players already built there (a world cache
entry that ``toolduel run`` made, or an earlier ``--workdir``), with the timings of its build.json.

The JSON (also printed) holds the budget, the build's timings and the measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

VALIDATION_SEED = 917_331  # no training data uses seeds near this


def fc_scores(fc_path: Path, evaluate_on: str, batch_size: int) -> dict:
    from toolduel.data import load_samples
    from toolduel.evaluate import score_generation, summarize
    from toolduel.models import load_model
    from toolduel.models.base import GenerationConfig
    from toolduel.world.generator import generate_samples
    from toolduel.world.phrasing import PERTURBATIONS, PLAIN

    model = load_model({"backend": "transformers", "path": str(fc_path), "dtype": "bfloat16",
                        "batch_size": batch_size})
    if evaluate_on == "validation":
        sets = {kind: generate_samples(n, seed=VALIDATION_SEED + i, kinds=(kind,), phrasings=(PLAIN,), split="train",
                                       id_prefix=f"val-{kind}")
                for i, (kind, n) in enumerate((("one_call", 96), ("two_call", 32), ("no_call", 32)))}
    else:
        sets = {name: load_samples(f"world:{name}", limit=100).samples for name in ("plain", "hard", "two_call",
                                                                                      "no_call")}
        sets |= {name: load_samples(f"world:{name}", limit=50).samples for name in PERTURBATIONS}
    scores, started = {}, time.perf_counter()
    for name, samples in sets.items():
        answers = model.generate([s.messages for s in samples], [s.tools for s in samples],
                                 GenerationConfig(max_new_tokens=128))
        summary = summarize(score_generation(s, a) for s, a in zip(samples, answers))
        scores[name] = {"accuracy": round(summary["accuracy"], 3), "n": summary["n"],
                        "errors": summary["error_types"]}
        print(name, scores[name]["accuracy"], file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    return {"sets": scores, "seconds": round(seconds, 1),
            "answers_per_s": round(sum(s["n"] for s in scores.values()) / seconds, 2)}


def query_scores(query_path: Path, batch_size: int) -> dict:
    from collections import Counter

    from toolduel.models import load_model
    from toolduel.models.base import GenerationConfig
    from toolduel.prompts import query_model_messages
    from toolduel.referee.validity import check_query
    from toolduel.world.generator import generate_samples
    from toolduel.world.lexicon import world_lexicon
    from toolduel.world.phrasing import PHRASINGS, PLAIN
    from toolduel.world.training_data import FC_KIND_WEIGHTS

    model = load_model({"backend": "transformers", "path": str(query_path), "dtype": "bfloat16",
                        "batch_size": batch_size})
    seeds = [s for s in generate_samples(48, seed=VALIDATION_SEED + 10, phrasings=(PLAIN,), kind_weights=FC_KIND_WEIGHTS,
                                         split="train", id_prefix="val-seed") if s.gold][:24]
    styles = [*PHRASINGS, None]
    asked = [(seed, style) for seed in seeds for style in styles]
    result, lexicon = {}, world_lexicon()
    for temperature in (0.7, 1.0):
        started = time.perf_counter()
        answers = model.generate([query_model_messages(s, style=st) for s, st in asked], [s.tools for s, _ in asked],
                                 GenerationConfig(max_new_tokens=48, temperature=temperature, seed=0))
        verdicts = [check_query(a.text.strip(), s, lexicon) for (s, _), a in zip(asked, answers)]
        per_style = Counter(), Counter()
        for (_, style), verdict in zip(asked, verdicts):
            per_style[0][style or "(none)"] += verdict.valid
            per_style[1][style or "(none)"] += 1
        result[str(temperature)] = {
            "valid": round(sum(v.valid for v in verdicts) / len(verdicts), 3), "n": len(verdicts),
            "per_style": {k: round(per_style[0][k] / per_style[1][k], 3) for k in per_style[1]},
            "reasons": dict(Counter(v.error_type for v in verdicts if not v.valid)),
            "queries_per_s": round(len(asked) / (time.perf_counter() - started), 2),
            "examples": [[s.query, st, a.text.strip()] for (s, st), a in list(zip(asked, answers))[:9]]}
        print("query", temperature, result[str(temperature)]["valid"], file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="default")
    parser.add_argument("--roles", default="fc,query", help="which players to build and measure")
    parser.add_argument("--fc-answers", type=int)
    parser.add_argument("--query-examples", type=int)
    parser.add_argument("--train-layers", type=int, help="top layers that train (0: all)")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--query-batch-size", type=int)
    parser.add_argument("--query-learning-rate", type=float)
    parser.add_argument("--fc-turns", type=int)
    parser.add_argument("--fc-phrasings", choices=("plain", "all"),
                        help="all: a reference FC model that has seen every phrasing kind (a solving judge)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--evaluate", choices=("validation", "heldout", "none"), default="validation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="generation batch when measuring")
    parser.add_argument("--workdir", type=Path, help="keep the built players here")
    parser.add_argument("--measure", type=Path, metavar="FOLDER",
                        help="do not build: measure the players already built in FOLDER (it holds build.json)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from toolduel.training import warm_start

    budget = warm_start.get_budget(args.budget)
    changes = {name: value for name, value in (("fc_answers", args.fc_answers), ("query_examples", args.query_examples),
                                                ("learning_rate", args.learning_rate), ("fc_turns", args.fc_turns),
                                                ("fc_phrasings", args.fc_phrasings),
                                                ("query_batch_size", args.query_batch_size),
                                                ("query_learning_rate", args.query_learning_rate),
                                                ("seed", args.seed)) if value is not None}
    if args.train_layers is not None:
        changes["train_layers"] = args.train_layers or None
    budget = dataclasses.replace(budget, **changes)
    roles = tuple(r.strip() for r in args.roles.split(","))
    workdir = args.measure or args.workdir or Path(tempfile.mkdtemp(prefix="warm-start-"))
    report: dict = {"budget": dataclasses.asdict(budget), "roles": roles, "threads": args.threads,
                    "evaluate": args.evaluate}

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))

    if args.measure:
        report["build"] = json.loads((workdir / "build.json").read_text(encoding="utf-8"))
        report["budget"] = report["build"]["budget"]
    else:
        report["build"] = warm_start.build_world_models(budget, workdir, progress=False, roles=roles)
    save()
    if args.evaluate != "none":
        if "fc" in roles:
            report["fc"] = fc_scores(workdir / "fc", args.evaluate, args.batch_size)
            save()
        if "query" in roles:
            report["query"] = query_scores(workdir / "query", args.batch_size)
            save()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
