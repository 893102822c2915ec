"""The world build's FC phase alone, exactly as ``build_world_models`` runs it (same data,
tokenizer corpus, model and settings), with another answer count, seed or loss path, measured
on held-out plain and two_call: how much one recipe varies from run to run (docs/BENCHMARKS.md,
"fourth pass").

    python benchmarks/fc_phase.py --answers 60000 --seed 1 --threads 1 --out runs/fc-phase
    python benchmarks/fc_phase.py --trl-head --planned-decay --out runs/fc-phase-trl   # TRL's own LM-head loss
    python benchmarks/fc_phase.py --seed 1 --copy-warmup 6400 --out runs/fc-phase-echo   # echo queries first
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path


def echo_rows(n: int, seed: int) -> list[dict]:
    """``n`` rows whose answer repeats the user's plain query: copying without function calling."""
    from toolduel.world.training_data import fc_examples

    queries = [next(m["content"] for m in row["messages"] if m["role"] == "user")
               for row in fc_examples(n, seed=seed + 500, turns=1)]
    return [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": q}]}
            for q in queries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=None, help="FC answers (default: the default budget's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trl-head", action="store_true", help="TRL's loss path instead of labelled positions only")
    parser.add_argument("--decay-when-exact", type=float, default=None,
                        help="start the decay once this share of probe rows is answered exactly (default: the build's)")
    parser.add_argument("--copy-warmup", type=int, default=0,
                        help="first train on this many rows that repeat a plain query back (a copy task, batch 16)")
    parser.add_argument("--layers", type=int, default=None, help="transformer layers (default: the budget's)")
    parser.add_argument("--intermediate", type=int, default=None, help="MLP width (default: the budget's)")
    parser.add_argument("--lr-decay", type=float, default=None,
                        help="share of the planned steps the rate falls over (default: the budget's)")
    parser.add_argument("--planned-decay", action="store_true", help="no probe: the decay starts where planned")
    parser.add_argument("--out", required=True, help="folder for the trained model")
    args = parser.parse_args()

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("toolduel.training.sft").setLevel(logging.INFO)  # the decay probe's readings
    from toolduel.training import sft as warm_start
    from toolduel.training.warm_start import (
        BUDGETS,
        fresh_model,
        probe_rows,
        rows_and_tokenizer,
        warm_start_settings,
    )

    if args.trl_head:
        import trl

        warm_start._sft_trainer_class = lambda: trl.SFTTrainer
    sys.path.insert(0, str(Path(__file__).parent))
    from world_build import fc_accuracy

    default = BUDGETS["default"]
    budget = dataclasses.replace(default, fc_examples=args.answers or default.fc_examples, seed=args.seed,
                                 num_layers=args.layers or default.num_layers,
                                 lr_decay=default.lr_decay if args.lr_decay is None else args.lr_decay,
                                 intermediate_size=args.intermediate or default.intermediate_size,
                                 fc_decay_when_exact=None if args.planned_decay else
                                 default.fc_decay_when_exact if args.decay_when_exact is None else args.decay_when_exact)
    fc_rows, _, tokenizer = rows_and_tokenizer(budget)
    model = fresh_model(budget, tokenizer, "fc")
    start, steps = time.perf_counter(), []
    if args.copy_warmup:
        warm_start.sft_train(model, tokenizer, echo_rows(args.copy_warmup, args.seed), warm_start.SFTSettings(
            examples=args.copy_warmup, batch_size=16, decay=0.2, adam_beta2=0.95, seed=args.seed), tempfile.mkdtemp())
        print(f"copy warm-up: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    warm_start.sft_train(model, tokenizer, fc_rows, warm_start_settings(budget, "fc", len(fc_rows)),
                         tempfile.mkdtemp(), on_step=lambda step, _total: steps.append(step),
                         probe_rows=probe_rows(budget, "fc"))
    train_s = time.perf_counter() - start
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    accuracy = fc_accuracy(Path(args.out), 200, 32, sets=("plain", "two_call"))
    print(json.dumps({"settings": vars(args), "answers": budget.fc_examples, "steps": len(steps),
                      "train_s": round(train_s),
                      "accuracy": accuracy}))


if __name__ == "__main__":
    main()
