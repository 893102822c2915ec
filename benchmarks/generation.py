"""FC answers per second: toolduel's generation path against transformers' ``generate``.

    python benchmarks/generation.py --out docs/generation.json                 # the default's FC model
    python benchmarks/generation.py --items 64 --paths toolduel --batch-sizes 16,32,64

The default duel's round-0 FC model (the embedded world's warm start, built or cached) answers
the first ``--items`` requests of ``world:hard``: greedy, at most 128 new tokens, ``--threads``
threads, nothing else should run. Each path answers the same prompts:

- ``reference-float32``, ``reference-bfloat16``: ``model.generate`` over left-padded batches of
  ``--reference-batch`` prompts sorted by length (what toolduel did before its own decoder);
- ``toolduel``: :class:`toolduel.models.hf.TransformersChatModel` in bfloat16 (continuous
  batching, :mod:`toolduel.models.decoding`) at each of ``--batch-sizes``.

For each: answers/s, the share of the machine's limit (``--limit``: FLOPs per answer against
the bf16 matmul peak, docs/BENCHMARKS.md), accuracy by the checker, the answers identical to
each reference, and the accuracy minus each reference's on the same items with a 95% bootstrap
interval over items. The JSON is written after every path, so a cut run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path


def reference_answers(path: Path, dtype: str, prompts: list[list[int]], batch_size: int) -> tuple[list[str], int]:
    """Answers (and their new tokens) from ``model.generate`` over length-sorted, left-padded batches."""
    import torch

    from toolduel.checkpoints import load_causal_lm, load_tokenizer
    from toolduel.models.decoding import left_padded
    from toolduel.models.hf import TransformersChatModel, resolve_dtype

    model = load_causal_lm(path, dtype=resolve_dtype(dtype)).eval()
    chat = TransformersChatModel.from_objects(model, load_tokenizer(path))
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            input_ids, mask = left_padded([prompts[i] for i in batch], chat.pad_id)
            width = input_ids.shape[1]
            output = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=128, do_sample=False,
                                    pad_token_id=chat.pad_id, eos_token_id=sorted(chat.stop_ids))
            for row, i in enumerate(batch):
                answers[i] = output[row, width:].tolist()
    decoded = [chat.decode_new_tokens(ids) for ids in answers]
    return [text for text, _, _ in decoded], sum(count for _, _, count in decoded)


def measure(name: str, run, samples, references: dict) -> dict:
    from toolduel.evaluate import score_generation
    from toolduel.models.base import Generation

    started = time.perf_counter()
    texts, new_tokens = run()
    seconds = time.perf_counter() - started
    records = [score_generation(sample, Generation(text=text)) for sample, text in zip(samples, texts)]
    correct = [int(bool(r["valid"])) for r in records]
    result = {"path": name, "seconds": round(seconds, 1), "answers_per_s": round(len(samples) / seconds, 2),
              "new_tokens": new_tokens, "accuracy": round(sum(correct) / len(correct), 4),
              "identical_to": {ref_name: sum(a == b for a, b in zip(texts, ref["texts"]))
                               for ref_name, ref in references.items()},
              "accuracy_minus": {ref_name: paired_difference(correct, ref["correct"])
                                 for ref_name, ref in references.items()}}
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result | {"texts": texts, "correct": correct}


def paired_difference(ours: list[int], theirs: list[int], resamples: int = 10_000) -> dict:
    """Mean of ``ours - theirs`` over the same items, with a 95% bootstrap interval over items."""
    differences = [a - b for a, b in zip(ours, theirs)]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(differences, k=len(differences))) for _ in range(resamples))
    return {"mean": round(statistics.fmean(differences), 4),
            "ci95": [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples) - 1], 4)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=256, help="the first N requests of world:hard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="reference-float32,reference-bfloat16,toolduel")
    parser.add_argument("--batch-sizes", default="32", help="toolduel's batch sizes (comma-separated)")
    parser.add_argument("--reference-batch", type=int, default=32)
    parser.add_argument("--fc-model", type=Path, help="default: the embedded world's FC model (default budget)")
    parser.add_argument("--limit", type=float, default=19.0, help="the machine's answers/s limit (docs/BENCHMARKS.md)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from toolduel.data import load_samples
    from toolduel.models import load_model
    from toolduel.models.base import GenerationConfig

    fc_path = args.fc_model or _default_fc_model()
    samples = load_samples("world:hard", limit=args.items).samples
    report: dict = {"fc_model": str(fc_path), "items": len(samples), "threads": args.threads, "max_new_tokens": 128,
                    "device": "cpu", "torch": torch.__version__, "limit_answers_per_s": args.limit, "paths": []}
    chat = load_model({"backend": "transformers", "path": str(fc_path), "dtype": "bfloat16"})
    prompts = [chat.tokenizer(chat.render_prompt(s.messages, s.tools), add_special_tokens=False)["input_ids"]
               for s in samples]
    references: dict[str, dict] = {}  # name: texts and correct (0/1) per item
    for path in args.paths.split(","):
        if path.startswith("reference-"):
            dtype = path.removeprefix("reference-")
            result = measure(path, lambda: reference_answers(fc_path, dtype, prompts, args.reference_batch),
                             samples, references)
            references[path] = {"texts": result.pop("texts"), "correct": result.pop("correct")}
            report["paths"].append(result | {"batch_size": args.reference_batch})
        else:
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                chat.batch_size = batch_size
                config = GenerationConfig(temperature=0, max_new_tokens=128)
                result = measure(f"toolduel-b{batch_size}", lambda: _toolduel_answers(chat, samples, config),
                                 samples, references)
                result.pop("texts"), result.pop("correct")
                report["paths"].append(result | {"batch_size": batch_size})
        for entry in report["paths"]:
            entry["share_of_limit"] = round(entry["answers_per_s"] / args.limit, 3)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def _toolduel_answers(chat, samples, config) -> tuple[list[str], int]:
    answers = chat.generate([s.messages for s in samples], [s.tools for s in samples], config)
    return [a.text for a in answers], sum(a.meta["completion_tokens"] for a in answers)


def _default_fc_model() -> Path:
    from toolduel.training.warm_start import ensure_world_models

    return Path(ensure_world_models("default", progress=True).fc_path)


if __name__ == "__main__":
    raise SystemExit(main())
