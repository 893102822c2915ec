"""The run folder: where every phase of both programs writes, and how it is read back.

Every file name of a run folder is written here only. A duel (``toolduel run``):

    RUN_DIR/
      config.yaml                     the settings the run used (no secrets: keys stay in env vars)
      state.json                      the last completed phase (for --resume)
      metrics.jsonl                   one line per round (round 0: the FC model before any defence)
      pool.jsonl                      the adversarial pool: every valid harvested query, with provenance
      pool_dataset/                   the same pool as a Hugging Face dataset (save_to_disk)
      rounds/round_<t>/
        query_model/                  the query model after this round's attack (with query_lora: a PEFT adapter)
        fc_model/                     the FC model after this round's defence (with fc_lora: a PEFT adapter)
        guard.json                    the defence guard's verdict, and each attempt's
        retry_<n>/fc_model/           the FC model of the defence's n-th retry after the guard rejected a
                                      defence (with its validation/ answers and trainer/ files)
        attack_log.jsonl              per attack step: queries, attack success, validity, seconds, and per
                                      style and tool move asked [queries, weaknesses]
        harvest.jsonl                 every harvested query, valid or not, with rejection reasons
        fresh_attack.jsonl            the round's query model on fresh seeds against the defended FC model:
                                      every query, as in harvest.jsonl (what the after-defence rate is measured on)
        after_defence.jsonl           the defended FC model's answers to this round's pool queries (which it
                                      trained on: the report's examples, not a rate)
        eval/<set>/results.jsonl      held-out evaluation, the format of `toolduel eval`
        eval/<set>/summary.json
      final_fc_model/                 the FC model after the last round (always a full, merged checkpoint)
      judge_cache.jsonl               the judge's verdicts, when a judge is configured
      report/                         the weakness report (HTML + PNG)

A metrics line holds at least ``round``, ``accuracy`` ({held-out set: accuracy}),
``attack_success_rate`` (the round's query model against the defended FC model, on fresh
queries; None with ``after_defence_attack`` false) and ``validity_rate`` (of the harvest); also ``attack_success_rate_before_defence`` (the
harvest's queries against the FC model before the defence), ``attack`` (both measurements in
full: ``before_defence``, ``after_defence``), ``pool_size``, ``error_kinds`` ({set: {kind:
count}}), ``error_types`` and ``seconds`` ({phase: seconds}).

A pool record (one JSON line) holds ``id``, ``round``, ``seed_id``, ``query_checkpoint``,
``fc_checkpoint``, ``query`` (the request), ``tool_edits`` (the edits of the tool list the query
model wrote after it, :mod:`toolduel.referee.tool_grammar`; usually none), ``seed_query``,
``phrasing`` (the style the query was asked in, where one was), ``tool_move`` (the move the tool
list was edited by, or asked for, or None),
``sample`` (``Sample.to_dict()`` with the adversarial query as its user message, and the edited
tools and gold calls where a tool move was made),
``fc_outputs`` (raw texts of the k FC samples), ``verdicts`` (their verdict dicts), ``fc_answers``
(the answers the query took: k, and k more on the seed's own tool list where those were asked),
``fc_success`` (mean score), ``attack_success`` (bool: the FC model failed), ``solvable`` (bool:
some answer was right, or a solving judge answered it), ``reference_solved``, ``error_type`` and
``kind`` (of the first failing verdict, or None).

A harvest record holds ``round``, ``index``, ``seed_id``, ``query`` (as written: the request, and
any tool edits after it), ``style`` and ``tool_move`` (its spec), ``valid`` and ``reasons`` (why the validity gate rejected it; empty when valid),
``fc_success``, ``solvable`` and ``sample``.

An after-defence record holds ``id`` (the pool record's), ``round``, ``raw_output``, ``verdict``.

A black-box attack (``toolduel attack``) keeps ``config.yaml``, ``state.json``, ``pool.jsonl``,
``pool_dataset/``, ``metrics.jsonl`` (one line), ``judge_cache.jsonl`` and ``report/`` as above,
with its one round's ``attack_log.jsonl``, ``harvest_stats.json``, ``trainer/`` (the latest
training checkpoint) and ``query_model/`` at the top, and ``queries.jsonl``, the ledger of every
query scored (:mod:`toolduel.blackbox.ledger`). An evaluation (``toolduel eval``) writes
``config.yaml``, ``results.jsonl`` and ``summary.json``.

:class:`RunFolder` is the state both programs keep in ``state.json`` (phases done, and what else
they need to resume); :func:`seeded_draw` draws samples the same way on every resume.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from toolduel.config import ConfigError, read_file_text, regular_file

T = TypeVar("T")

CONFIG = "config.yaml"
STATE = "state.json"
METRICS = "metrics.jsonl"
POOL = "pool.jsonl"
POOL_DATASET = "pool_dataset"
FINAL_FC_MODEL = "final_fc_model"
REPORT = "report"
JUDGE_CACHE = "judge_cache.jsonl"
QUERIES = "queries.jsonl"  # the black-box attack's ledger
ROUNDS = "rounds"
# in a round's folder (and, for the black-box attack's one round, at the top)
QUERY_MODEL = "query_model"
FC_MODEL = "fc_model"
TRAINER = "trainer"
ATTACK_LOG = "attack_log.jsonl"
HARVEST = "harvest.jsonl"
HARVEST_STATS = "harvest_stats.json"
FRESH_ATTACK = "fresh_attack.jsonl"
AFTER_DEFENCE = "after_defence.jsonl"
ROUND_METRICS = "metrics.json"
GUARD = "guard.json"  # the defence guard's verdict (toolduel.duel.guard)
EVAL = "eval"
# an evaluation's folder
RESULTS = "results.jsonl"
SUMMARY = "summary.json"


def round_dir(run_dir: str | Path, round_index: int) -> Path:
    return Path(run_dir) / ROUNDS / f"round_{round_index}"


def defence_dir(run_dir: str | Path, round_index: int, attempt: int = 0) -> Path:
    """Where a round's defence writes its FC model: the round's folder, or for the guard's n-th
    retry ``retry_<n>/`` in it."""
    folder = round_dir(run_dir, round_index)
    return folder if attempt == 0 else folder / f"retry_{attempt}"


def round_of(path: Path) -> int | None:
    """The round of a ``rounds/round_<t>`` folder, None for any other name (``round_1.bak``)."""
    match = re.fullmatch(r"round_(\d+)", path.name)
    return int(match.group(1)) if match else None


def round_files(run_dir: str | Path, name: str) -> list[Path]:
    """``rounds/round_<t>/<name>`` of every round that has one, in round order."""
    found = [(round_of(path.parent), path) for path in Path(run_dir).glob(f"{ROUNDS}/round_*/{name}")]
    return [path for index, path in sorted((i, p) for i, p in found if i is not None)]


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


def json_text(value: object, indent: int | None = None) -> str:
    """``value`` as JSON that can be written as UTF-8 whatever its strings hold. A lone surrogate
    (which a server's JSON may carry as ``"\\ud800"``, and which UTF-8 cannot encode) is written
    as that escape again, which reads back to the same string; other text stays as it is."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    return text


def write_json_atomic(path: str | Path, data: object) -> None:
    write_text_atomic(path, json_text(data, indent=2) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    """Replace ``path`` with ``records``, one JSON line each, atomically."""
    write_text_atomic(path, "".join(json_text(record) + "\n" for record in records))


def append_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Append records, one line each, flushed to disk; returns how many were written. Every line
    is encoded before any is written, so a record that cannot be written costs no other; a last
    line a crash left without its newline is cut first (:func:`truncate_torn_line`), so the new
    record never glues onto it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truncate_torn_line(path)  # also refuses a FIFO or a device, which appending would wait on or fill
    lines = [json_text(record) + "\n" for record in records]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def truncate_torn_line(path: str | Path) -> None:
    """Cut a last line that a crash left without its newline (it is no record), so that lines
    appended next start on a line of their own. Everything before it stays as it is."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    regular_file(path, "run file", max_bytes=None)
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        end = size
        while end > 0:  # back to the last newline, a block at a time
            start = max(0, end - (1 << 16))
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())


class CorruptFileError(ConfigError):
    """A run file that cannot be read; the message names the file (and line) and what is wrong."""


def read_json_object(path: str | Path) -> dict:
    """The JSON object in ``path``, or :class:`CorruptFileError` saying what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(read_file_text(path, "run file", errors="replace"))
    except ConfigError as err:
        raise CorruptFileError(str(err)) from None
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); it was cut off or "
                               "edited: restore it, or remove the folder and start again") from None
    except RecursionError:
        raise CorruptFileError(f"{path} is nested too deeply to be a run file") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def iter_jsonl(path: str | Path, strict: bool = False, required: Sequence[str] = (),
               on_problem: Callable[[str], None] | None = None) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file that hold the ``required`` keys.

    A torn last line (a crash mid-write) is dropped. Any other bad line (not JSON, not an
    object, a key missing) raises :class:`CorruptFileError` naming the file and line when
    ``strict``; else it is skipped, and ``on_problem`` (if given) hears ``"line N: what"``, as
    it does of a torn last line."""
    path = Path(path)
    text = read_file_text(path, "run file", errors="replace")
    pieces = text.split("\n")  # not splitlines(): JSON strings may hold U+2028 and other line breaks
    last = len(pieces) - (0 if pieces[-1] else 1)
    for number, line in enumerate(pieces[:last], start=1):
        if not line.strip():
            continue
        problem = None
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            if number == last and not text.endswith("\n"):  # the line being written when the process died
                if on_problem is not None:
                    on_problem(f"line {number} is cut off (the run stopped mid-write?); left out")
                return
            record, problem = None, f"not valid JSON ({getattr(err, 'msg', 'nested too deeply')})"
        if problem is None and not isinstance(record, dict):
            problem = f"expected a JSON object, got {type(record).__name__}"
        if problem is None:
            missing = [key for key in required if key not in record]
            problem = f"lacks {', '.join(missing)}" if missing else None
        if problem is None:
            yield record
        elif strict:
            raise CorruptFileError(f"{path}:{number}: {problem}")
        elif on_problem is not None:
            on_problem(f"line {number}: {problem}; left out")


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict]:
    return list(iter_jsonl(path, strict=strict)) if os.path.lexists(path) else []


def write_derived_jsonl(target: str | Path, records: list[dict], sources: str) -> None:
    """Replace ``target``, a file derived from ``sources`` (named in the message), with ``records``
    (atomically); refused with a :class:`CorruptFileError`, ``target`` left as it was, when that
    would leave it with fewer records than it holds: a derived file never shrinks from a damaged
    or emptied source without saying so."""
    before = len(read_jsonl(target))
    if len(records) < before:
        raise CorruptFileError(f"{target} holds {before} records, but {sources} only give {len(records)}; it is "
                               f"left as it was: restore {sources}, or remove {target} to rebuild it smaller")
    write_jsonl_atomic(target, records)


def rebuild_jsonl(target: str | Path, sources: Iterable[str | Path]) -> list[dict]:
    """``target`` rewritten (atomically) as the records of ``sources`` in order, and returned; a
    source line that is not a record (a torn last line too) is a :class:`CorruptFileError`
    naming it, and ``target`` is left as it was. (A phase played again may rightly write its own
    file smaller, so here the sources, read whole, are the truth.)"""
    sources = [Path(source) for source in sources]
    records: list[dict] = []
    for source in sources:
        problems: list[str] = []
        records += iter_jsonl(source, on_problem=problems.append)
        if problems:
            raise CorruptFileError(f"{source}: {problems[0]}; {target} is left as it was: repair or remove that line")
    write_jsonl_atomic(target, records)
    return records


def write_pool_dataset(records: list[dict], path: Path) -> None:
    """Pool records as a Hugging Face dataset (``datasets.load_from_disk``), nested values as JSON
    text; no folder when there are no records."""
    from datasets import Dataset

    shutil.rmtree(path, ignore_errors=True)
    if records:
        flat = [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in records]
        Dataset.from_list(flat).save_to_disk(str(path))


def seeded_draw(items: Sequence[T], n: int, stream: str, seed: int) -> list[T]:
    """``n`` items drawn with replacement for one purpose (``stream``), the same on every resume."""
    rng = random.Random(f"{seed}:{stream}")
    return [items[rng.randrange(len(items))] for _ in range(n)]


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


_STATE_FIELDS: dict[str, Callable[[Any], bool]] = {
    "completed": lambda v: isinstance(v, list) and all(isinstance(phase, str) for phase in v),
    "seconds": lambda v: isinstance(v, dict),
    "fc_path": _text_or_none, "query_path": _text_or_none, "stopped": _text_or_none,
    "fc_path_before_defence": _text_or_none,
    "requests_sent": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
}


class RunFolder:
    """A run folder, its config and its state (``state.json``): the phases done, how long each
    took, and whatever else a program keeps to resume (checkpoint paths, requests sent).

    Every process of a run holds the state in memory; only a ``writer`` (the main process)
    writes it."""

    def __init__(self, folder: str | Path, config: Any, defaults: dict | None = None, writer: bool = True):
        self.dir, self.config, self.writer = Path(folder), config, writer
        self.state = (defaults or {}) | (self.read_state() or {})
        self.state.setdefault("completed", [])
        self.state.setdefault("seconds", {})
        self._last_mark = time.time()  # a phase's duration: from the previous mark (or the start) to its own

    def read_state(self) -> dict | None:
        """``state.json`` (None when absent), its fields checked: a damaged file is named, not a traceback."""
        path = self.dir / STATE
        if not os.path.lexists(path):  # a link to nothing, or a loop, is a damaged state, not a missing one
            return None
        state = read_json_object(path)
        problems = [f"{key} is {state[key]!r}" for key, valid in _STATE_FIELDS.items()
                    if key in state and not valid(state[key])]
        if problems:
            raise CorruptFileError(f"{path}: {'; '.join(problems)}, not what a run writes; restore the file, or "
                                   "remove the folder and start again")
        return state

    @staticmethod
    def create(folder: Path, config_text: str, what: str) -> None:
        """Make ``folder`` and write its config; refuse a folder that already holds a ``what``."""
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder")
        if os.path.lexists(folder / CONFIG) or os.path.lexists(folder / STATE):
            raise ConfigError(f"{folder} already holds {what}; continue it with --resume {folder}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / CONFIG, config_text)
        except OSError as err:
            raise ConfigError(f"--out {folder} cannot be written ({err.strerror or err})") from None

    def done(self, phase: str) -> bool:
        return phase in self.state["completed"]

    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        if self.writer:
            write_json_atomic(self.dir / STATE, self.state)

    def seconds_since_mark(self) -> float:
        return round(time.time() - self._last_mark, 1)

    def mark(self, phase: str, **paths: Path) -> None:
        """``phase`` is done (with how long it took); ``paths`` (files in the folder) are kept by name."""
        self.state["seconds"][phase] = self.seconds_since_mark()
        self._last_mark = time.time()
        self.save(completed=[*self.state["completed"], phase],
                  **{key: str(Path(path).relative_to(self.dir)) for key, path in paths.items()})

    def path(self, key: str) -> Path:
        """The file or folder ``state.json`` keeps under ``key`` (a player's checkpoint); a
        :class:`CorruptFileError` when it names nothing that exists (a moved or damaged folder)."""
        path = self.dir / str(self.state.get(key))
        if self.state.get(key) is None or not path.exists():
            raise CorruptFileError(f"{self.dir / STATE} names {self.state.get(key)!r} as {key}, and there is no such "
                                   f"file or folder in {self.dir}; restore it, or start the run again")
        return path

    def wait_for(self, phase: str, poll_seconds: float = 1.0) -> None:
        """Wait (a process that does not write) until the writer marks ``phase`` done.

        Polling the state file, not a collective barrier: a phase can take longer than a
        process group's timeout. If the main process dies, the launcher stops this one."""
        while True:
            state = self.read_state()
            if state is not None and phase in state["completed"]:
                self.state = state
                self._last_mark = time.time()
                return
            time.sleep(poll_seconds)
