"""The run folder: where every phase of the duel writes, and how it is read back.

    RUN_DIR/
      config.yaml                     the settings the run used (no secrets: keys stay in env vars)
      state.json                      the last completed phase (for --resume)
      metrics.jsonl                   one line per round (round 0: the FC model before any defence)
      pool.jsonl                      the adversarial pool: every valid harvested query, with provenance
      pool_dataset/                   the same pool as a Hugging Face dataset (save_to_disk)
      rounds/round_<t>/
        query_model/                  the query model after this round's attack (with query_lora: a PEFT adapter)
        fc_model/                     the FC model after this round's defence (with fc_lora: a PEFT adapter)
        attack_log.jsonl              per attack step: queries, attack success, validity, seconds
        harvest.jsonl                 every harvested query, valid or not, with rejection reasons
        after_defence.jsonl           the new FC model's answers to this round's pool queries
        eval/<set>/results.jsonl      held-out evaluation, the format of `toolduel eval`
        eval/<set>/summary.json
      final_fc_model/                 the FC model after the last round (always a full, merged checkpoint)
      judge_cache.jsonl               the judge's verdicts, when a judge is configured
      report/                         the weakness report (HTML + PNG)

A metrics line holds at least ``round``, ``accuracy`` ({held-out set: accuracy}),
``attack_success_rate`` and ``validity_rate``; also ``pool_size``, ``error_kinds``
({set: {kind: count}}), ``error_types`` and ``seconds`` ({phase: seconds}).

A pool record (one JSON line) holds ``id``, ``round``, ``seed_id``, ``query_checkpoint``,
``fc_checkpoint``, ``query``, ``seed_query``, ``phrasing`` (the seed's tag, where known),
``sample`` (``Sample.to_dict()`` with the adversarial query as its user message),
``fc_outputs`` (raw texts of the k FC samples), ``verdicts`` (their verdict dicts),
``fc_success`` (mean score), ``attack_success`` (bool: the FC model failed), ``error_type``
and ``kind`` (of the first failing verdict, or None).

A harvest record holds ``round``, ``seed_id``, ``query``, ``valid`` and ``reasons`` (why the
validity gate rejected it; empty when valid).

An after-defence record holds ``id`` (the pool record's), ``round``, ``raw_output``, ``verdict``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

CONFIG = "config.yaml"
STATE = "state.json"
METRICS = "metrics.jsonl"
POOL = "pool.jsonl"
POOL_DATASET = "pool_dataset"
FINAL_FC_MODEL = "final_fc_model"
REPORT = "report"


def round_dir(run_dir: str | Path, round_index: int) -> Path:
    return Path(run_dir) / "rounds" / f"round_{round_index}"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` so that a reader (or a resumed run) sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json_atomic(path: str | Path, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    """Replace ``path`` with ``records``, one JSON line each, atomically."""
    write_text_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def append_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Append records, one line each, flushed to disk; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


class CorruptFileError(ValueError):
    """A run file that cannot be read; the message names the file and line."""


def iter_jsonl(path: str | Path, strict: bool = False) -> Iterator[dict]:
    """Records of a JSON-lines file. A torn last line (a crash mid-write) is dropped; a bad line
    elsewhere raises :class:`CorruptFileError` naming it when ``strict``, else is skipped."""
    path = Path(path)
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not line.endswith("\n"):
                return  # the line being written when the process died
            if strict:
                raise CorruptFileError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            continue
        if not isinstance(record, dict):
            if strict:
                raise CorruptFileError(f"{path}:{number}: expected a JSON object")
            continue
        yield record


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict]:
    return list(iter_jsonl(path, strict=strict)) if Path(path).exists() else []
