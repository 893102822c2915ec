"""Read a run folder (or a ``toolduel eval`` folder) for the report, whatever state it is in.

Nothing here raises on a missing or corrupt file: each problem becomes one line in
``RunData.problems`` naming the file (relative to the folder) and what is wrong, the bad part
is left out, and the report renders the rest. The layout is :mod:`toolduel.run_files`'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from toolduel.config import ConfigError, read_file_text
from toolduel.evaluate import summarize
from toolduel.run_files import (
    AFTER_DEFENCE,
    ATTACK_LOG,
    CONFIG,
    EVAL,
    FRESH_ATTACK,
    HARVEST,
    METRICS,
    POOL,
    QUERIES,
    RESULTS,
    ROUNDS,
    STATE,
    SUMMARY,
    iter_jsonl,
    round_of,
)

MAX_PROBLEMS_PER_FILE = 3  # then one line counting the rest


@dataclass
class EvalSet:
    """One held-out evaluation: ``summary`` (summary.json, or recomputed) and its results records."""

    summary: dict | None = None
    results: list[dict] = field(default_factory=list)


@dataclass
class RunData:
    folder: Path
    kind: str = "run"  # "run" (a duel) or "eval" (one `toolduel eval` output folder)
    metrics: list[dict] = field(default_factory=list)  # one per round, sorted by round
    pool: list[dict] = field(default_factory=list)
    harvest: dict[int, list[dict]] = field(default_factory=dict)  # round -> records
    after_defence: dict[str, dict] = field(default_factory=dict)  # pool record id -> record
    fresh_attack: dict[int, list[dict]] = field(default_factory=dict)  # round -> records
    attack_steps: dict[int, list[dict]] = field(default_factory=dict)  # round -> the attack's GRPO steps
    evals: dict[int, dict[str, EvalSet]] = field(default_factory=dict)  # round -> set name -> evaluation
    config_text: str | None = None
    state: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> list[int]:
        """Every round any file speaks of."""
        found = {m["round"] for m in self.metrics} | set(self.harvest) | set(self.evals)
        return sorted(found | {r["round"] for r in self.pool if isinstance(r.get("round"), int)})


class _FileProblems:
    """Problems of one file, capped, each line starting with the file's path."""

    def __init__(self, name: str, problems: list[str]):
        self.name, self.problems, self.count = name, problems, 0

    def add(self, what: str) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEMS_PER_FILE:
            self.problems.append(f"{self.name}: {what}")

    def close(self) -> None:
        if self.count > MAX_PROBLEMS_PER_FILE:
            self.problems.append(f"{self.name}: {self.count - MAX_PROBLEMS_PER_FILE} more bad lines left out")


def _read_text(path: Path, folder: Path, problems: list[str]) -> str | None:
    try:
        return read_file_text(path, _name(path, folder), errors="replace")
    except ConfigError as error:
        problems.append(str(error))
        return None


def _name(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def read_records(path: Path, folder: Path, problems: list[str], required: tuple[str, ...] = ()) -> list[dict]:
    """The JSON objects of a JSON-lines file that hold the ``required`` keys; every other line
    (bad JSON, not an object, a key missing, a last line cut off by a crash) is one problem."""
    file_problems = _FileProblems(_name(path, folder), problems)
    try:
        records = list(iter_jsonl(path, required=required, on_problem=file_problems.add))
    except ConfigError as error:
        problems.append(f"{_name(path, folder)}: {error}")
        return []
    file_problems.close()
    return records


def read_json(path: Path, folder: Path, problems: list[str]) -> dict | None:
    text = _read_text(path, folder, problems)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        problems.append(f"{_name(path, folder)}: not valid JSON ({error.msg} at line {error.lineno})")
        return None
    except RecursionError:
        problems.append(f"{_name(path, folder)}: nested too deeply to be a run file; left out")
        return None
    if not isinstance(data, dict):
        problems.append(f"{_name(path, folder)}: expected a JSON object, got {type(data).__name__}")
        return None
    return data


def _is_rate(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1)


def _clean_metrics(records: list[dict], problems: list[str]) -> list[dict]:
    """Metrics lines with an integer ``round``; a field of the wrong shape is dropped and named."""
    file_problems, clean = _FileProblems(METRICS, problems), {}
    for record in records:
        if not isinstance(record.get("round"), int) or isinstance(record["round"], bool):
            file_problems.add(f"a line has round {record.get('round')!r}, not an integer; left out")
            continue
        where = f"round {record['round']}"
        for key in ("accuracy", "error_kinds", "seconds"):
            if key in record and not isinstance(record[key], dict):
                file_problems.add(f"{where}: {key} is not an object; ignored")
                record.pop(key)
        accuracy = record.get("accuracy", {})
        for name, value in list(accuracy.items()):
            if not _is_rate(value):
                file_problems.add(f"{where}: accuracy of {name!r} is {value!r}, not a number in [0, 1]; ignored")
                accuracy.pop(name)
        for key in ("attack_success_rate", "validity_rate"):
            if not _is_rate(record.get(key)):
                file_problems.add(f"{where}: {key} is {record[key]!r}, not a number in [0, 1]; ignored")
                record.pop(key)
        if record["round"] in clean:
            file_problems.add(f"{where} appears twice; the last line is used")
        clean[record["round"]] = record
    file_problems.close()
    return [clean[r] for r in sorted(clean)]


def load_eval_set(folder: Path, root: Path, problems: list[str]) -> EvalSet:
    """results.jsonl + summary.json; a missing or broken summary is recomputed from the results."""
    evaluation = EvalSet()
    results_path, summary_path = folder / RESULTS, folder / SUMMARY
    if results_path.exists():
        evaluation.results = read_records(results_path, root, problems, required=("id", "category"))
    else:
        problems.append(f"{_name(results_path, root)}: missing; no examples from this evaluation")
    summary_problems = []
    if summary_path.exists():
        evaluation.summary = read_json(summary_path, root, summary_problems)
    elif results_path.exists():
        summary_problems.append(f"{_name(summary_path, root)}: missing")
    if evaluation.summary is None and evaluation.results:
        try:
            evaluation.summary = summarize(evaluation.results)
            summary_problems = [f"{line}; recomputed from {RESULTS}" for line in summary_problems]
        except (KeyError, TypeError, AttributeError) as error:
            summary_problems.append(f"{_name(results_path, root)}: cannot be summarised "
                                    f"({type(error).__name__}: {error})")
    problems.extend(summary_problems)
    return evaluation


def _set_name(folder_name: str, evaluation: EvalSet, metrics: list[dict]) -> str:
    """The held-out set's name as metrics.jsonl spells it: the summary's ``set``, else the metrics
    name whose folder this is (``bfcl:simple_python`` lives in ``eval/bfcl_simple_python``)."""
    named = (evaluation.summary or {}).get("set")
    if isinstance(named, str) and named:
        return named
    names = {name for m in metrics for name in m.get("accuracy", {})}
    return next((name for name in sorted(names) if name.replace(":", "_") == folder_name), folder_name)


def _round_folders(folder: Path) -> dict[int, Path]:
    found = {}
    for path in (folder / ROUNDS).glob("round_*"):
        index = round_of(path)
        if index is not None and path.is_dir():
            found[index] = path
    return dict(sorted(found.items()))


def _load_rounds(data: RunData) -> None:
    folder, problems = data.folder, data.problems
    duel_rounds = {m["round"] for m in data.metrics if m["round"] > 0} | {r["round"] for r in data.pool}
    round_folders = _round_folders(folder)
    for round_index in sorted(duel_rounds - set(round_folders) - set(data.harvest)):
        problems.append(f"rounds/round_{round_index}: missing; no harvest, defence or eval files for that round")
    for round_index, path in round_folders.items():
        for name, required in ((HARVEST, ("valid",)), (AFTER_DEFENCE, ("id", "verdict"))):
            if (path / name).exists():
                records = read_records(path / name, folder, problems, required)
                if name == HARVEST:
                    data.harvest[round_index] = [r | {"round": round_index} for r in records]
                else:
                    data.after_defence.update({str(r["id"]): r for r in records})
            elif round_index > 0:
                problems.append(f"{_name(path / name, folder)}: missing")
        if (path / ATTACK_LOG).exists():
            data.attack_steps[round_index] = read_records(path / ATTACK_LOG, folder, problems, ("step",))
        if (path / FRESH_ATTACK).exists():  # runs from before the fresh measurement have none
            data.fresh_attack[round_index] = read_records(path / FRESH_ATTACK, folder, problems, ("valid",))
        evals = {}
        for set_folder in sorted(p for p in (path / EVAL).glob("*") if p.is_dir()):
            evaluation = load_eval_set(set_folder, folder, problems)
            evals[_set_name(set_folder.name, evaluation, data.metrics)] = evaluation
        if evals:
            data.evals[round_index] = evals


def load_folder(folder: str | Path) -> RunData:
    """Everything the report needs from a run folder or an eval folder, with the problems found."""
    folder = Path(folder)
    data = RunData(folder)
    if not folder.is_dir():
        data.problems.append(f"{folder}: no such folder")
        return data
    if (folder / CONFIG).exists():
        data.config_text = _read_text(folder / CONFIG, folder, data.problems)
    is_eval = (folder / RESULTS).exists() or (folder / SUMMARY).exists()
    if is_eval and not any((folder / name).exists() for name in (METRICS, POOL, ROUNDS)):
        data.kind = "eval"
        data.evals = {0: {folder.name: load_eval_set(folder, folder, data.problems)}}
        return data
    if (folder / STATE).exists():
        data.state = read_json(folder / STATE, folder, data.problems)
    if (folder / METRICS).exists():
        data.metrics = _clean_metrics(read_records(folder / METRICS, folder, data.problems, ("round",)),
                                      data.problems)
    else:
        data.problems.append(f"{METRICS}: missing; curves use the round folders' files where they can")
    if (folder / POOL).exists():
        data.pool = _clean_pool(read_records(folder / POOL, folder, data.problems, ("id", "round", "query")),
                                data.problems)
    elif any(m["round"] > 0 for m in data.metrics) or any(r > 0 for r in _round_folders(folder)):
        data.problems.append(f"{POOL}: missing; no attack traits, phrasing or examples")
    if (folder / QUERIES).exists():  # the last record of each query; a failed one was never judged
        records = read_records(folder / QUERIES, folder, data.problems, ("key", "status", "valid"))
        data.harvest[1] = [r | {"round": 1} for r in {r["key"]: r for r in records}.values() if r["status"] == "scored"]
    if (folder / ATTACK_LOG).exists():  # a black-box attack: its one round
        data.attack_steps[1] = read_records(folder / ATTACK_LOG, folder, data.problems, ("step",))
    _load_rounds(data)
    if not data.rounds:
        data.problems.append(f"{folder}: holds neither {METRICS}, {POOL}, rounds/ nor {RESULTS}; "
                             "is it a run or eval folder?")
    return data


def _clean_pool(records: list[dict], problems: list[str]) -> list[dict]:
    file_problems, clean = _FileProblems(POOL, problems), []
    for record in records:
        if isinstance(record["round"], int) and not isinstance(record["round"], bool) \
                and isinstance(record["query"], str):
            clean.append(record)
        else:
            file_problems.add(f"record {str(record['id'])[:60]!r}: round or query of the wrong type; left out")
    file_problems.close()
    return clean
