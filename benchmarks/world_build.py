"""Benchmark the embedded world: build both tiny models from nothing, then measure them.

    python benchmarks/world_build.py --budget default --threads 2 --out runs/world_build.json

Reports (and writes as JSON): the build time; the FC warm start's exact-call accuracy
(toolduel.checker) on every held-out set; the query model's rule-validity rate
(toolduel.referee.validity) over sampled queries, per requested style, and whether each style's
samples show that style's marks (kind coverage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path


def train_further(init: str, rows: list[dict], settings, out: str, chat_template: str | None = None) -> float:
    """Train the checkpoint at ``init`` on ``rows`` with the build's ``sft_train`` and save it (with
    its tokenizer, whose chat template ``chat_template`` replaces) in ``out``; the training seconds."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from toolduel.training.sft import sft_train

    tokenizer = AutoTokenizer.from_pretrained(init)
    model = Qwen2ForCausalLM.from_pretrained(init)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    start = time.perf_counter()
    sft_train(model, tokenizer, rows, settings, tempfile.mkdtemp(), on_step=lambda *_: None)
    train_s = time.perf_counter() - start
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return train_s


def fc_accuracy(fc_path: Path, limit: int, batch_size: int, sets: tuple[str, ...] | None = None) -> dict:
    """Greedy exact-call accuracy on ``sets`` (default: every held-out set, with ``hard`` as the
    mean of the perturbation kinds) and the generation speed."""
    from toolduel.checker import check_sample
    from toolduel.models.base import GenerationConfig
    from toolduel.models.hf import TransformersChatModel
    from toolduel.parsing import parse_calls
    from toolduel.world.heldout import WORLD_SETS, load_world_set

    model = TransformersChatModel.from_pretrained(fc_path, device="cpu", batch_size=batch_size)
    results, start, count = {}, time.perf_counter(), 0
    for name in sets or WORLD_SETS:
        if name == "hard":
            continue  # the union of the perturbation sets, reported as their mean below
        samples = load_world_set(name, limit=limit)
        outputs = model.generate([s.messages for s in samples], [s.tools for s in samples],
                                 GenerationConfig(max_new_tokens=96, temperature=0.0))
        verdicts = [check_sample(s, parse_calls(o.text)) for s, o in zip(samples, outputs)]
        results[name] = round(sum(v.valid for v in verdicts) / len(verdicts), 3)
        count += len(samples)
        print(f"  fc {name:20s} {results[name]:.3f}", file=sys.stderr)
    from toolduel.world.phrasing import PERTURBATIONS

    if all(k in results for k in PERTURBATIONS):
        results["hard"] = round(sum(results[k] for k in PERTURBATIONS) / len(PERTURBATIONS), 3)
    results["examples_per_s"] = round(count / (time.perf_counter() - start), 1)
    return results


def _style_marks(style: str, query: str, seed) -> bool:
    """Whether ``query`` shows the marks of ``style`` (a rough detector, for coverage only)."""
    from toolduel.world.functions import functions_by_name
    from toolduel.world.phrasing import _CHATTY_OPEN
    from toolduel.world.surface import indirect_forms, surface_forms

    low = query.lower()
    functions = [functions_by_name()[g.name] for g in seed.gold]
    plain_intents = [i.lower() for f in functions for i in f.intents]
    alt_intents = [i.lower().rstrip(",") for f in functions for i in f.alt_intents]
    values = [v for g in seed.gold for v in g.canonical_call().arguments.values() if not isinstance(v, bool)]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    if style == "plain":
        return any(low.startswith(i) for i in plain_intents)
    if style == "paraphrase":
        return any(i in low for i in alt_intents)
    if style == "indirect_values":
        return any(surface_forms(v)[0].lower() not in low and any(f.lower() in low for f in indirect_forms(v))
                   for v in flat)
    if style == "reordered":
        return not any(low.startswith(i) for i in plain_intents) and any(i in low for i in plain_intents)
    if style == "distractor_numbers":
        gold_digits = {d for v in flat for d in re.findall(r"\d+", surface_forms(v)[0] if surface_forms(v) else "")}
        return any(d not in gold_digits for d in re.findall(r"\d+", query))
    if style == "chatty":
        return any(low.startswith(o.lower()[:12]) for o in _CHATTY_OPEN)
    if style == "noisy":
        return query != query.capitalize() and low != query or bool(re.search(r"\b[A-Z]{3,}\b", query)) \
            or not any(i in low for i in plain_intents + alt_intents)
    if style == "terse":
        return " the " not in f" {low} " and not query.rstrip().endswith((".", "?", "!"))
    return False


def query_model_report(query_path: Path, seeds_per_style: int, batch_size: int, temperature: float) -> dict:
    from toolduel.models.base import GenerationConfig
    from toolduel.models.hf import TransformersChatModel
    from toolduel.prompts import query_model_messages
    from toolduel.referee.validity import check_query
    from toolduel.world.heldout import load_world_set
    from toolduel.world.lexicon import world_lexicon
    from toolduel.world.phrasing import PHRASINGS

    model = TransformersChatModel.from_pretrained(query_path, device="cpu", batch_size=batch_size)
    seeds = load_world_set("plain", limit=seeds_per_style)
    mixed = seeds[: seeds_per_style // 2] + load_world_set("two_call", limit=seeds_per_style // 4) \
        + load_world_set("no_call", limit=seeds_per_style // 4)
    report: dict = {"temperature": temperature, "styles": {}}
    all_valid = total = 0
    for style in (*PHRASINGS, None):
        group = seeds if style else mixed
        prompts = [query_model_messages(s, style=style) for s in group]
        outputs = model.generate(prompts, [s.tools for s in group],
                                 GenerationConfig(max_new_tokens=80, temperature=temperature, seed=0))
        verdicts = [check_query(o.text, s, world_lexicon()) for s, o in zip(group, outputs)]
        valid = sum(v.valid for v in verdicts)
        entry = {"valid": round(valid / len(group), 3),
                 "changed": round(sum(o.text.strip() != s.query for s, o in zip(group, outputs)) / len(group), 3),
                 "example": outputs[0].text}
        if style:
            entry["marked"] = round(sum(_style_marks(style, o.text, s) and v.valid for s, o, v in
                                        zip(group, outputs, verdicts)) / len(group), 3)
        report["styles"][style or "unstyled"] = entry
        all_valid, total = all_valid + valid, total + len(group)
        print(f"  query {style!s:20s} {entry}", file=sys.stderr)
    report["valid_overall"] = round(all_valid / total, 3)
    report["kinds_covered"] = sorted(k for k, e in report["styles"].items() if e.get("marked", 0) >= 0.2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="default")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2 cores)")
    parser.add_argument("--cache", default=None, help="cache folder; default: a fresh temporary one")
    parser.add_argument("--reuse", action="store_true", help="use a cached build instead of building anew")
    parser.add_argument("--limit", type=int, default=200, help="samples per held-out set")
    parser.add_argument("--query-seeds", type=int, default=80, help="seed samples per query-model style")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=None, help="JSON file for the numbers")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ["TOOLDUEL_CACHE"] = args.cache or tempfile.mkdtemp(prefix="toolduel-bench-")
    from toolduel.training.warm_start import ensure_world_models

    start = time.perf_counter()
    models = ensure_world_models(args.budget, progress=True, force=not args.reuse)
    result = {"budget": args.budget, "threads": args.threads, "build_wall_s": round(time.perf_counter() - start, 1),
              "build": models.info}
    print(f"built in {result['build_wall_s']} s: {models.info['timings']}", file=sys.stderr)
    result["fc"] = fc_accuracy(models.fc_path, args.limit, args.batch_size)
    result["query"] = query_model_report(models.query_path, args.query_seeds, args.batch_size, args.temperature)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
