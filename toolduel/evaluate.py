"""Evaluate a model on samples: generate, parse, check, write one JSON line per sample, summarise.

The results file is appended to (and flushed to disk) as answers arrive and is never rewritten,
so an interrupted evaluation loses at most the batch in flight, and ``resume=True`` picks up
where it stopped. A request that failed
(an endpoint that never answered) is recorded with its reason and left out of accuracy.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from toolduel.checker import check_sample
from toolduel.models.base import ChatModel, Generation, GenerationConfig
from toolduel.parsing import parse_calls
from toolduel.progress import progress_bar
from toolduel.run_files import (
    RESULTS,
    SUMMARY,
    append_jsonl,
    iter_jsonl,
    truncate_torn_line,
    write_json_atomic,
)
from toolduel.schema import Sample

_log = logging.getLogger(__name__)


def score_generation(sample: Sample, generation: Generation) -> dict:
    """One results record: what was asked, what came back, and the checker's verdict."""
    record = {
        "id": sample.id,
        "category": sample.category,
        "phrasing": sample.meta.get("phrasing"),
        "prompt": sample.messages,
        "tools": [tool.name for tool in sample.tools],
        "gold": [gold.to_bfcl() for gold in sample.gold],
        "raw_output": generation.text,
        "tool_calls": generation.tool_calls,
    }
    if generation.error:
        return record | {"generation_error": generation.error, "parsed_calls": None, "verdict": None,
                         "error_type": None, "valid": None}
    parsed = parse_calls(generation.text, tool_calls=generation.tool_calls)
    verdict = check_sample(sample, parsed)
    return record | {
        "parsed_calls": [call.to_dict() for call in parsed.calls],
        "parse_error": parsed.error,
        "verdict": verdict.to_dict(),
        "valid": verdict.valid,
        "error_type": verdict.error_type,
    }


def summarize(records: Iterable[dict]) -> dict:
    """Overall and per-category accuracy, counts per error type and per error kind."""
    per_category: dict[str, Counter] = defaultdict(Counter)
    error_types: Counter = Counter()
    error_kinds: Counter = Counter()
    failed = 0
    for record in records:
        if record.get("generation_error"):
            failed += 1
            per_category[record["category"]]["failed"] += 1
            continue
        counts = per_category[record["category"]]
        counts["n"] += 1
        if record["valid"]:
            counts["correct"] += 1
        else:
            error_types[record["error_type"]] += 1
            error_kinds[record["verdict"]["kind"]] += 1
    answered = sum(c["n"] for c in per_category.values())
    correct = sum(c["correct"] for c in per_category.values())
    return {
        "n": answered,
        "correct": correct,
        "accuracy": correct / answered if answered else None,
        "failed_requests": failed,
        "per_category": {
            name: {"n": c["n"], "correct": c["correct"], "failed": c["failed"],
                   "accuracy": c["correct"] / c["n"] if c["n"] else None}
            for name, c in sorted(per_category.items())
        },
        "error_types": dict(error_types.most_common()),
        "error_kinds": dict(error_kinds.most_common()),
    }


def read_results(path: Path) -> list[dict]:
    """Records of a results file; a last line cut off by a crash is dropped, not fatal, and so is
    a line that is not a record with an ``id`` (it is named in the warning log)."""
    return [r for r in iter_jsonl(path, required=("id",), on_problem=lambda line: _log.warning("%s: %s", path, line))]\
        if os.path.lexists(path) else []  # a link to nothing, or a loop, is named, not taken for absent


def latest_by_id(records: Iterable[dict]) -> list[dict]:
    """The last record of each sample id: a request that failed and was answered on resume
    counts once, as answered."""
    return list({str(record["id"]): record for record in records}.values())


def evaluate(model: ChatModel, samples: list[Sample], out_dir: str | Path,
             config: GenerationConfig | None = None, batch_size: int = 16,
             resume: bool = False, progress: bool = True, meta: dict | None = None) -> dict:
    """Evaluate ``model`` on ``samples``; write results and summary under ``out_dir``; return the summary.

    Each batch's records are appended to ``results.jsonl`` and flushed to disk as they are
    scored; nothing already written is rewritten. ``resume`` skips the samples already
    answered (a failed request is asked again, and its new record supersedes the old)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS
    done_ids: set[str] = set()
    if resume:
        truncate_torn_line(results_path)  # so the next line does not glue onto a line cut off by a crash
        done_ids = {str(r["id"]) for r in latest_by_id(read_results(results_path)) if not r.get("generation_error")}
    todo = [s for s in samples if s.id not in done_ids]
    with progress_bar("evaluating", total=len(todo), enabled=progress) as advance:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            generations = model.generate([s.messages for s in batch], [s.tools for s in batch], config)
            append_jsonl(results_path, [score_generation(sample, generation)
                                        for sample, generation in zip(batch, generations, strict=True)])
            advance(len(batch))
    wanted = {sample.id for sample in samples}
    records = [r for r in latest_by_id(read_results(results_path)) if str(r["id"]) in wanted]
    summary = summarize(records) | {"model": getattr(model, "name", "model"), **(meta or {})}
    write_json_atomic(out_dir / SUMMARY, summary)
    return summary
