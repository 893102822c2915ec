"""The black-box attack's record of every query (``queries.jsonl``) and its request budget.

Against an endpoint every answer costs, and a run may die at any moment. So each query,
identified by its seed, its text and the move its tool list was edited by (:func:`query_key`), is

- scored once: the rule check and the judge, then ``k`` answers from the FC model; its record
  is appended, and flushed to disk, as soon as its answers arrive;
- never asked twice: a query that comes up again (GRPO groups often hold repeats; a resumed
  run replays the steps after its last checkpoint) reuses its record, for free;
- or recorded as failed, with its reason: every answer failed at the endpoint after the
  client's retries, the judge could not be asked, or the request budget was spent. A failed
  query is tried again if it comes up again, and a success then supersedes the failure.

So the file holds at most one ``scored`` record per key, after any ``failed`` ones; a reader
takes the last record of each key (:func:`latest_records`). A record holds ``id``, ``key``,
``round`` (1), ``phase`` (attack or harvest), ``step`` (the GRPO step, in the attack),
``seed_id``, ``query``, ``style`` and ``tool_move`` (its spec, :mod:`toolduel.specs`),
``status`` (scored or failed), ``valid``, ``reasons`` (the validity gate's, as in a harvest
record), ``error`` (why it failed), ``fc_model``, ``fc_outputs``, ``verdicts``, ``fc_errors``
(answers that failed; the others make ``fc_success``), ``fc_success``, ``attack_success``
(valid and some answer wrong), ``solvable`` (some answer right, a solving judge right, or, on an
edited tool list, an answer on the seed's own list right: see :mod:`toolduel.referee.outcome`),
``reference_solved``, ``requests`` (sent to the FC endpoint for it, the answers on the seed's
own list included, and the retries), ``attempts`` (HTTP attempts, retries included) and ``time``.

The budget counts requests before they are sent and saves the count at once, so a run killed
mid-batch has counted what it sent, and a resumed run never goes past its budget. A retry is a
request too: the endpoint client asks the budget for it (:meth:`RequestBudget.permit`) and does
not make one the budget cannot pay for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.referee.judge import NOT_ASKED
from toolduel.referee.outcome import (
    TOOL_MOVE_KEY,
    AttackOutcome,
    adversarial_sample,
    gate,
    needs_unedited_answer,
    score_answers,
    solve_unedited,
)
from toolduel.referee.rewards import QueryReward, QueryRewardSettings
from toolduel.referee.validity import Lexicon
from toolduel.run_files import append_jsonl, iter_jsonl
from toolduel.schema import Sample

BUDGET_SPENT = "not scored: the request budget is spent"
logger = logging.getLogger(__name__)


def query_key(seed_id: str, query: str, tool_move: str | None = None) -> str:
    """A query's key: its seed and text, and the move its tool list was edited by (if any)."""
    text = f"{seed_id}\0{query}" if tool_move is None else f"{seed_id}\0{query}\0{tool_move}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def latest_records(path: str | Path, on_problem: Callable[[str], None] | None = None) -> dict[str, dict]:
    """The last record of each key in a ledger file (a scored record is never followed by another).
    A line that is no such record (not JSON, a field missing or of the wrong type, a key that is
    not its query's) is left out, and ``on_problem`` (default: a warning) hears which and why; its
    query, should it come up again, is asked again."""
    path = Path(path)
    if not os.path.lexists(path):  # a link to nothing, or a loop, is a damaged ledger, not a missing one
        return {}
    tell = on_problem or (lambda problem: logger.warning("%s: %s", path, problem))
    latest = {}
    for record in iter_jsonl(path, required=("id", "key", "status", "valid", "query", "seed_id", "phase"),
                             on_problem=tell):
        problem = record_problem(record)
        if problem is None:
            latest[record["key"]] = record
        else:
            tell(f"record {str(record['id'])[:60]!r}: {problem}; left out")
    return latest


def record_problem(record: dict) -> str | None:
    """What makes a ledger line no record this module wrote (None: nothing)."""
    texts = [name for name in ("id", "key", "query", "seed_id", "phase") if not isinstance(record[name], str)]
    if texts:
        return f"{', '.join(texts)} should be text"
    if record["status"] not in ("scored", "failed"):
        return f"status {str(record['status'])[:20]!r} is neither scored nor failed"
    if not isinstance(record["valid"], bool):
        return "valid should be true or false"
    lists = [name for name in ("reasons", "fc_outputs", "verdicts", "fc_errors")
             if not isinstance(record.get(name) or [], list)]
    if lists:
        return f"{', '.join(lists)} should be a list"
    if not all(isinstance(reason, str) for reason in record.get("reasons") or []):
        return "reasons should be a list of texts"
    success = record.get("fc_success")
    if success is not None and (isinstance(success, bool) or not isinstance(success, (int, float))):
        return "fc_success should be a number or null"
    if any(record.get(name) is not None and not _counts(record[name]) for name in ("step", "requests")):
        return "step and requests should be whole numbers"
    tool_move = record.get("tool_move")
    if record["key"] != query_key(record["seed_id"], record["query"], tool_move if isinstance(tool_move, str) else None):
        return "its key is not its seed's, query's and tool move's"
    return None


def _counts(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def recorded_requests(path: str | Path) -> int:
    """The requests every line of a ledger file says it sent (failed attempts included)."""
    if not os.path.lexists(path):
        return 0
    return sum(record["requests"] for record in iter_jsonl(path) if _counts(record.get("requests")))


def outcome_from_record(record: dict) -> AttackOutcome:
    return AttackOutcome(query=record["query"], valid=bool(record["valid"]), reasons=list(record.get("reasons") or []),
                         fc_outputs=list(record.get("fc_outputs") or []), verdicts=list(record.get("verdicts") or []),
                         fc_success=record.get("fc_success"), error=record.get("error"),
                         fc_errors=list(record.get("fc_errors") or []),
                         reference_solved=record.get("reference_solved") is True,
                         style=_text_or_none(record.get("style")), tool_move=_text_or_none(record.get("tool_move")))


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def http_attempts(generations: list) -> int:
    """The HTTP requests behind ``generations``: each answer's first and its retries."""
    return sum(int(g.meta.get("attempts", 1)) for g in generations)


class RequestBudget:
    """At most ``limit`` requests (None: no limit). ``save(used)`` is called with the new count
    before the requests it grants go out."""

    def __init__(self, limit: int | None, used: int = 0, save: Callable[[int], None] | None = None):
        self.limit, self.used, self._save = limit, used, save
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def take(self, requests: int) -> int:
        """Grant up to ``requests`` requests; returns how many."""
        return self.take_groups(requests, 1)

    def permit(self) -> bool:
        """Grant one request (a retry); the ``retry_permit`` of an endpoint client."""
        return self.take(1) == 1

    def take_groups(self, groups: int, size: int) -> int:
        """Grant whole groups of ``size`` requests (a query's ``k`` answers); returns how many groups."""
        with self._lock:
            granted = groups if self.limit is None else min(groups, (self.limit - self.used) // size)
            granted = max(0, granted)
            if granted:
                self.used += granted * size
                if self._save is not None:
                    self._save(self.used)
            return granted


class QueryLedger:
    """Scores queries against ``fc_model`` through ``path`` (see the module docstring).

    ``failure_limit``: after this many queries in a row without an answer from an endpoint
    (the FC model's or the judge's), ``outage`` holds the last error, and the caller stops."""

    def __init__(self, path: str | Path, fc_model: ChatModel, k: int, generation: GenerationConfig,
                 budget: RequestBudget | None = None, judge: Any = None, lexicon: Lexicon | None = None,
                 failure_limit: int = 32, workers: int | None = None):
        self.path = Path(path)
        self.fc_model, self.k, self.generation = fc_model, k, generation
        self.budget = budget or RequestBudget(None)
        self.judge, self.lexicon = judge, lexicon
        self.failure_limit = failure_limit
        concurrency = getattr(fc_model, "max_concurrency", 1)
        self.workers = workers or max(1, concurrency // max(1, k))  # each worker has k requests in flight
        self.records = latest_records(self.path)
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def outage(self) -> str | None:
        """The last error, once ``failure_limit`` queries in a row got no answer; else None."""
        return self.last_error if self.consecutive_failures >= self.failure_limit else None

    def is_scored(self, key: str) -> bool:
        return self.records.get(key, {}).get("status") == "scored"

    def score(self, seeds: list[Sample], queries: list[str], phase: str,
              step: int | None = None) -> list[AttackOutcome]:
        """One outcome per query, in order: from the ledger when it holds the query scored, else
        scored now (each distinct new query once) and recorded."""
        keys = [query_key(seed.id, query, seed.meta.get(TOOL_MOVE_KEY))
                for seed, query in zip(seeds, queries, strict=True)]
        first: dict[str, int] = {}
        for index, key in enumerate(keys):
            if not self.is_scored(key):
                first.setdefault(key, index)
        # 1. validity: the rules, then the judge (cached per query and gold calls)
        gated = gate([seeds[i] for i in first.values()], [queries[i] for i in first.values()],
                     self.lexicon, self.judge)
        fresh = dict(zip(first, gated))
        # 2. the budget: whole queries of k requests each, counted before they are sent
        to_answer = [key for key, outcome in fresh.items() if outcome.valid and not outcome.failed]
        granted = self.budget.take_groups(len(to_answer), self.k)
        for key in to_answer[granted:]:
            fresh[key].error = BUDGET_SPENT
        answered = set(to_answer[:granted])
        for key, outcome in fresh.items():
            if key not in answered:
                self._write(key, seeds[first[key]], outcome, phase, step, requests=0, attempts=0)
        # 3. the FC model's answers, each query recorded as soon as its k answers are in
        if answered:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(answered)),
                                    thread_name_prefix="toolduel-ledger") as pool:
                jobs = [pool.submit(self._answer, key, seeds[first[key]], fresh[key], phase, step)
                        for key in to_answer[:granted]]
                for job in jobs:
                    job.result()
        return [outcome_from_record(self.records[key]) if self.is_scored(key) else fresh[key] for key in keys]

    def _answer(self, key: str, seed: Sample, outcome: AttackOutcome, phase: str, step: int | None) -> None:
        sample = adversarial_sample(seed, outcome.query)
        granted, attempts, retries = self.k, 0, 0
        try:
            generations = self.fc_model.generate([sample.messages] * self.k, [sample.tools] * self.k, self.generation)
            score_answers(outcome, sample, generations)
            attempts = http_attempts(generations)
            retries = attempts - len(generations)
            if needs_unedited_answer(seed, outcome) and self.budget.take_groups(1, self.k):
                plain = adversarial_sample(seed, outcome.query, edited=False)  # answerable on the seed's own tools?
                granted += self.k
                answers = self.fc_model.generate([plain.messages] * self.k, [plain.tools] * self.k, self.generation)
                solve_unedited(outcome, plain, answers)
                sent = http_attempts(answers)
                attempts, retries = attempts + sent, retries + sent - len(answers)
        except Exception as error:  # one broken answer must not cost the batch the others
            outcome.error = f"{type(error).__name__}: {error}"
        # the retries were paid from the budget as they went out (RequestBudget.permit)
        self._write(key, seed, outcome, phase, step, requests=granted + retries, attempts=attempts)

    def _write(self, key: str, seed: Sample, outcome: AttackOutcome, phase: str, step: int | None,
               requests: int, attempts: int) -> None:
        record = {
            "id": f"{seed.id}-{key[:10]}", "key": key, "round": 1, "phase": phase, "step": step,
            "seed_id": seed.id, "query": outcome.query, "status": "failed" if outcome.failed else "scored",
            "style": outcome.style, "tool_move": outcome.tool_move,
            "valid": outcome.valid, "reasons": outcome.reasons, "error": outcome.error,
            "fc_model": getattr(self.fc_model, "name", None), "fc_outputs": outcome.fc_outputs,
            "verdicts": outcome.verdicts, "fc_errors": outcome.fc_errors, "fc_success": outcome.fc_success,
            "attack_success": None if outcome.fc_success is None else outcome.fooled,
            "solvable": None if outcome.fc_success is None else outcome.solvable,
            "reference_solved": outcome.reference_solved,
            "sample": adversarial_sample(seed, outcome.query).to_dict() if outcome.valid else None,
            "requests": requests, "attempts": attempts, "time": round(time.time(), 3),
        }
        with self._lock:
            append_jsonl(self.path, [record])
            self.records[key] = record
            if outcome.failed and outcome.error not in (BUDGET_SPENT, NOT_ASKED):  # an endpoint gave no answer
                self.consecutive_failures += 1
                self.last_error = outcome.error
            elif requests:
                self.consecutive_failures = 0


class LedgerReward(QueryReward):
    """The query reward of the black-box attack: every query scored through a :class:`QueryLedger`."""

    def __init__(self, ledger: QueryLedger, settings: QueryRewardSettings):
        super().__init__(ledger.fc_model, k=ledger.k, settings=settings, generation=ledger.generation,
                         lexicon=ledger.lexicon, judge=ledger.judge)
        self.ledger = ledger

    def outcomes(self, samples: list[Sample], queries: list[str], trainer_state: Any = None) -> list[AttackOutcome]:
        step = None if trainer_state is None else trainer_state.global_step + 1  # the step being computed
        return self.ledger.score(samples, queries, phase="attack", step=step)
