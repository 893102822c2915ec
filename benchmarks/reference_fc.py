"""A reference FC model for the embedded world: the warm FC model trained further on queries of
every phrasing kind, to serve as a solving judge (``--judge-model DIR --judge-mode solve``) in
the ablation (docs/BENCHMARKS.md, "sixth pass").

    python benchmarks/reference_fc.py --init ~/.cache/toolduel/world/<entry>/fc --answers 30000 \
        --out runs/reference-fc

It stands in for what a real deployment would use as a judge: a stronger model than the one
under attack. It sees the world generator's own queries of every kind (train split only, so
the held-out sets stay unseen); it never writes training data for the FC model under attack,
it only decides whether a query can be solved. Measured on every held-out set; the numbers go
to ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="the FC checkpoint to train further (its tokenizer is kept)")
    parser.add_argument("--answers", type=int, default=30_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=6, help="conversations (3 answers each) per step")
    parser.add_argument("--seed", type=int, default=7, help="data seed (the warm start used 0)")
    parser.add_argument("--no-call-share", type=float, default=0.15,
                        help="share of first turns that no offered tool fits (the warm start's is 0.15)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=200, help="held-out samples per set")
    parser.add_argument("--out", required=True, help="folder for the trained model")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from toolduel.training.sft import SFTSettings
    from toolduel.world.phrasing import PHRASINGS
    from toolduel.world.training_data import fc_examples

    sys.path.insert(0, str(Path(__file__).parent))
    from world_build import fc_accuracy, train_further

    rest = 1.0 - args.no_call_share
    rows = fc_examples(args.answers, seed=args.seed, phrasings=PHRASINGS,
                       kind_weights=(0.8 * rest, 0.2 * rest, args.no_call_share))
    settings = SFTSettings(examples=len(rows), batch_size=args.batch_size, learning_rate=args.lr, decay=0.2,
                           adam_beta2=0.95, seed=args.seed)
    train_s = train_further(args.init, rows, settings, args.out)
    accuracy = fc_accuracy(Path(args.out), args.limit, 32)
    result = {"settings": vars(args), "train_s": round(train_s), "accuracy": accuracy}
    print(json.dumps(result))
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
