"""One query-model warm-start recipe, trained from a given FC checkpoint and measured: the
experiments behind docs/BENCHMARKS.md ("fourth pass").

    python benchmarks/query_recipe.py --init ~/.cache/toolduel/world/<entry>/fc --examples 16000 \
        --batch-size 8 --names-only --out runs/query-recipe

Trains on ``query_examples`` with ``sft_train`` (the build's own functions), saves the model
in ``--out`` and measures it like ``world_build.py`` (rule validity of sampled queries per
style, kind coverage); the numbers go to ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="FC checkpoint the query model starts from")
    parser.add_argument("--examples", type=int, default=16_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--decay", type=float, default=0.2)
    parser.add_argument("--names-only", action="store_true", help="the query template: tools by name only")
    parser.add_argument("--seeds-per-style", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="folder for the trained model")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from toolduel.training.sft import SFTSettings
    from toolduel.world.tiny_models import QUERY_CHAT_TEMPLATE
    from toolduel.world.training_data import query_examples

    sys.path.insert(0, str(Path(__file__).parent))
    from world_build import query_model_report, train_further

    rows = query_examples(args.examples, seed=0)
    settings = SFTSettings(examples=len(rows), batch_size=args.batch_size, learning_rate=args.lr,
                           decay=args.decay, adam_beta2=0.95, seed=1)
    train_s = train_further(args.init, rows, settings, args.out,
                            chat_template=QUERY_CHAT_TEMPLATE if args.names_only else None)
    report = query_model_report(Path(args.out), args.seeds_per_style, 32, 0.7)
    result = {"settings": vars(args), "steps": math.ceil(len(rows) / args.batch_size), "train_s": round(train_s, 1),
              "valid": report["valid_overall"], "kinds_covered": report["kinds_covered"],
              "per_style": {k: v["valid"] for k, v in report["styles"].items()}}
    print(json.dumps(result))
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
