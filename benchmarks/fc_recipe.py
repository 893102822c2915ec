"""One FC warm-start recipe, trained from nothing and measured: the experiments behind the
world's ``default`` budget (docs/BENCHMARKS.md, "FC recipe experiments").

    python benchmarks/fc_recipe.py --answers 30000 --split isolating --lr 1e-3 --out runs/recipe.json

It builds the world tokenizer (with the chosen pre-tokenizer split), a fresh tiny Qwen2, trains
it on plain FC conversations with the same ``fc_examples`` + ``sft_train`` that
``toolduel.training.warm_start`` uses, and reports greedy exact-call accuracy (toolduel.checker) on
held-out sets, the training time and the tokens per conversation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from world_build import (
    fc_accuracy,  # a sibling script: run as python benchmarks/fc_recipe.py
)

SETS = ("plain", "two_call", "no_call", "paraphrase", "indirect_values")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=30_000, help="plain FC answers to train on")
    parser.add_argument("--turns", type=int, default=3, help="answers per training conversation")
    parser.add_argument("--batch-size", type=int, default=6, help="conversations per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--decay", type=float, default=0.2,
                        help="fraction of steps the learning rate falls over (1: cosine, the second pass's schedule)")
    parser.add_argument("--beta2", type=float, default=0.95, help="AdamW beta2 (the second pass used 0.999)")
    parser.add_argument("--split", choices=("qwen2", "isolating"), default="qwen2", help="tokenizer pre-split")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--full-loss", action="store_true", help="loss on the whole conversation, not answers only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the initial weights and the order")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--limit", type=int, default=200, help="samples per held-out set")
    parser.add_argument("--out", default=None, help="JSON file for the numbers")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from toolduel.training.sft import SFTSettings, sft_train
    from toolduel.training.warm_start import _quiet_libraries, tokenizer_corpus
    from toolduel.world.tiny_models import (
        ISOLATING_PRETOKENIZE_REGEX,
        QWEN2_PRETOKENIZE_REGEX,
        build_qwen2,
        train_tokenizer,
    )
    from toolduel.world.training_data import fc_examples, query_examples

    split = ISOLATING_PRETOKENIZE_REGEX if args.split == "isolating" else QWEN2_PRETOKENIZE_REGEX
    work = tempfile.mkdtemp(prefix="fc-recipe-")
    with _quiet_libraries():
        rows = fc_examples(args.answers, seed=args.seed, turns=args.turns)
        tokenizer = train_tokenizer(tokenizer_corpus(rows, query_examples(1000), 6000), vocab_size=1536,
                                    pretokenize_regex=split)
        lengths = [len(tokenizer(tokenizer.apply_chat_template(r["messages"], tools=json.loads(r["tools"]),
                                                               tokenize=False))["input_ids"]) for r in rows[:300]]
        model = build_qwen2(tokenizer, num_heads=args.heads, num_kv_heads=args.kv_heads, seed=args.seed)
        settings = SFTSettings(examples=len(rows), batch_size=args.batch_size, learning_rate=args.lr,
                               decay=args.decay, adam_beta2=args.beta2,
                               answer_only_loss=not args.full_loss, seed=args.seed)
        start = time.perf_counter()
        sft_train(model, tokenizer, rows, settings, f"{work}/scratch", on_step=lambda step, total: None)
        train_s = time.perf_counter() - start
        model.save_pretrained(f"{work}/fc")
        tokenizer.save_pretrained(f"{work}/fc")
    result = {"settings": vars(args), "steps": math.ceil(len(rows) / args.batch_size),
              "tokens_per_conversation": round(statistics.mean(lengths)), "train_s": round(train_s),
              "accuracy": fc_accuracy(Path(f"{work}/fc"), args.limit, batch_size=32, sets=SETS)}
    text = json.dumps(result)
    print(text)
    print(f"model kept in {work}/fc", file=sys.stderr)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
