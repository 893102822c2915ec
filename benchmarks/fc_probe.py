"""A fast probe of FC warm-start recipes: how early does copying switch on?

    python benchmarks/fc_probe.py --answers 45000 --beta2 0.95 --schedule wsd --seed 0 --out runs/probe.jsonl

It trains a fresh tiny Qwen2 on the same plain FC conversations as ``toolduel.training.warm_start``
(``fc_examples``, loss on the assistant turns), but with a plain PyTorch loop, so that the
knobs SFTTrainer does not expose (RoPE base, initial scale, key-value heads, schedule) are
one flag each, and it measures a learning curve instead of one end point: every
``--eval-every`` steps, the teacher-forced exact-answer rate on held-out ``plain`` (every
answer token is the argmax, which is exactly when greedy decoding writes the gold answer;
one forward pass, so a curve costs seconds) and the per-token accuracy.

A recipe it finds is then built for real by ``benchmarks/world_build.py``, which measures the
checkpoint through the checker.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=45_000, help="plain FC answers to train on")
    parser.add_argument("--turns", type=int, default=3, help="answers per training conversation")
    parser.add_argument("--batch-size", type=int, default=6, help="conversations per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--beta2", type=float, default=0.95, help="AdamW's second-moment decay")
    parser.add_argument("--schedule", choices=("cosine", "constant", "wsd"), default="wsd",
                        help="after warmup: cosine to 0, flat, or flat then cosine over the last --decay")
    parser.add_argument("--decay", type=float, default=0.2, help="fraction of steps the wsd schedule falls over")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--rope-theta", type=float, default=10_000.0)
    parser.add_argument("--init-std", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the initial weights and the order")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--save", default=None, help="save the trained model (and tokenizer) here")
    parser.add_argument("--out", default=None, help="JSONL file to append the curve to")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    from transformers import (
        Qwen2Config,
        Qwen2ForCausalLM,
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_wsd_schedule,
    )

    from toolduel.prompts import fc_target
    from toolduel.training.warm_start import _quiet_libraries, tokenizer_corpus
    from toolduel.world.heldout import load_world_set
    from toolduel.world.tiny_models import train_tokenizer
    from toolduel.world.training_data import fc_examples, query_examples

    torch.set_num_threads(args.threads)
    with _quiet_libraries():
        rows = fc_examples(args.answers, seed=args.seed, turns=args.turns)
        tokenizer = train_tokenizer(tokenizer_corpus(rows, query_examples(1000), 6000))

    def encode(messages: list[dict], tools: list[dict]) -> tuple[list[int], list[int]]:
        out = tokenizer.apply_chat_template(messages, tools=tools, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return out["input_ids"], out["assistant_masks"]

    train = [encode(r["messages"], json.loads(r["tools"])) for r in rows]
    heldout = [encode([*s.messages, {"role": "assistant", "content": fc_target(s)}], [t.to_openai() for t in s.tools])
               for s in load_world_set("plain")]

    def batch(items: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        length = max(len(ids) for ids, _ in items)
        ids = torch.full((len(items), length), tokenizer.pad_token_id)
        attention = torch.zeros((len(items), length), dtype=torch.long)
        labels = torch.full((len(items), length), -100)
        for row, (tokens, mask) in enumerate(items):
            tokens_t = torch.tensor(tokens)
            ids[row, :len(tokens)], attention[row, :len(tokens)] = tokens_t, 1
            labels[row, :len(tokens)] = torch.where(torch.tensor(mask).bool(), tokens_t, -100)
        return ids, attention, labels

    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=1024, tie_word_embeddings=True,
                         rope_theta=args.rope_theta, initializer_range=args.init_std,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(args.seed)
    model = Qwen2ForCausalLM(config)

    @torch.no_grad()
    def measure() -> tuple[float, float]:
        model.eval()
        exact = right = total = 0
        for start in range(0, len(heldout), 50):
            ids, attention, labels = batch(heldout[start:start + 50])
            predicted = model(input_ids=ids, attention_mask=attention).logits[:, :-1].argmax(-1)
            target, scored = labels[:, 1:], labels[:, 1:] != -100
            exact += ((predicted == target) | ~scored).all(1).sum().item()
            right += ((predicted == target) & scored).sum().item()
            total += scored.sum().item()
        model.train()
        return exact / len(heldout), right / total

    # batches of similar length, as SFTTrainer's group_by_length makes them
    rng = random.Random(args.seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), 50 * args.batch_size):
        chunk = sorted(order[start:start + 50 * args.batch_size], key=lambda i: len(train[i][0]))
        group = [chunk[i:i + args.batch_size] for i in range(0, len(chunk), args.batch_size)]
        rng.shuffle(group)
        batches += group
    steps, warmup = len(batches), max(1, round(0.03 * len(batches)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, args.beta2), weight_decay=0.0)
    # transformers' schedulers, the ones SFTTrainer builds for the warm starts
    if args.schedule == "cosine":
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    elif args.schedule == "constant":
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    else:
        scheduler = get_wsd_schedule(optimizer, warmup, max(1, round(args.decay * steps)), num_training_steps=steps)
    curve, losses, start_time = [], [], time.perf_counter()
    model.train()
    for step, indices in enumerate(batches):
        ids, attention, labels = batch([train[i] for i in indices])
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step + 1 == steps:
            exact, token_accuracy = measure()
            curve.append({"step": step + 1, "exact": round(exact, 3), "token_accuracy": round(token_accuracy, 3),
                          "loss": round(sum(losses[-50:]) / len(losses[-50:]), 3)})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    result = {"settings": vars(args), "steps": steps, "train_s": round(time.perf_counter() - start_time),
              "curve": curve}
    if args.save:
        model.save_pretrained(args.save)
        tokenizer.save_pretrained(args.save)
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
