"""The validity judge: a model asked whether a query asks for exactly the gold calls.

The rule check (:mod:`toolduel.referee.validity`) sees whether every gold value is written in the
query; it cannot see that a query also asks for something else, is ambiguous, or gets a
boolean wrong. A judge can: any model :func:`toolduel.models.load_model` builds (a local
transformers checkpoint or an OpenAI-compatible endpoint) is shown the tools, the gold calls
and the query, and answers ``{"verdict": "valid" | "invalid", "reason": ...}``.

By default the judge VERIFIES against the known answer instead of solving the query and
comparing with the checker: a judge that solves would reject every query it finds too hard,
and hard but valid queries are exactly what the attack is after (with a judge no stronger than
the FC model, solving would filter out the successful attacks). Verifying is also the easier
task for the judge, and its answer is a short verdict rather than calls to parse.

``mode="solve"`` is for a judge that is stronger than the FC model under attack, e.g. a
larger FC model: it is given the tools and the query exactly as the FC model is, its answer is
parsed (never evaluated) and checked against the gold calls, and the query is valid when the
judge's calls are right. A query that asks for another function, for more than the gold calls,
or that garbles a value fails there, whatever words it shares with the gold request. The
rejection is ``judge: solved as <the checker's error type>``.

The prompt is a package file, ``judge_prompt.md`` (documented in its header); the
``judge_prompt`` setting replaces it. Answers are parsed as JSON, never evaluated; an answer
that cannot be read is a rejection with the reason ``judge_unparseable: ...`` (the judge did
not confirm the query), and a rejection is ``judge: <the judge's reason>``, in the rule
check's ``"type: detail"`` form. Verdicts are cached per (judge model, prompt, query, gold
calls) in a JSONL file, read back on resume, so the same pair is never asked twice. A request
that fails (endpoint down) is no verdict: it is reported as an ``error`` and not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from toolduel.checker import check_sample
from toolduel.config import ConfigError, check_env_name, check_http_url, read_file_text
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.parsing import parse_calls
from toolduel.referee.outcome import adversarial_sample
from toolduel.run_files import JUDGE_CACHE, append_jsonl, iter_jsonl
from toolduel.schema import Sample

JUDGE_MODES = ("verify", "solve")
PROMPT_FILE = "judge_prompt.md"
NOT_ASKED = "judge not asked: the request budget is spent"
MAX_ANSWER_CHARS = 20_000  # bounds the parser's work on a runaway answer
MAX_JSON_STARTS = 64
_PLACEHOLDER = re.compile(r"\{(tools|gold|query)\}")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_VERDICT_LINE = re.compile(r"^\W*verdict\W*[:=]\W*(valid|invalid)\b", re.I | re.M)
_DECISIONS = {"valid": True, "yes": True, "true": True, "invalid": False, "no": False, "false": False}


@dataclass
class JudgeVerdict:
    """``valid`` with the rejection ``reasons`` (empty when valid); ``error`` when no verdict
    came at all (the request failed), which is neither a rejection nor cached."""

    valid: bool
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    answer: str = ""  # the judge's raw answer (cut short), for the cache
    cached: bool = False


class Budget(Protocol):
    def take(self, requests: int) -> int: ...

    def permit(self) -> bool: ...  # one request more (a retry)


# --- the prompt ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePrompt:
    system: str
    user: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> "JudgePrompt":
        """The shipped prompt, or the file at ``path``: a ``## system`` and a ``## user`` section."""
        if path is None:
            text = resources.files("toolduel.referee").joinpath(PROMPT_FILE).read_text(encoding="utf-8")
            where = f"the shipped {PROMPT_FILE}"
        else:
            text = read_file_text(path, "judge_prompt", max_bytes=1_000_000)
            where = str(path)
        match = re.search(r"^## system[ \t]*\n(.*?)^## user[ \t]*\n(.*)\Z", text, re.S | re.M)
        if match is None:
            raise ConfigError(f"judge prompt {where} needs a '## system' line, then a '## user' line, each "
                              "followed by its message")
        system, user = match.group(1).strip(), match.group(2).strip()
        missing = [name for name in ("{tools}", "{gold}", "{query}") if name not in system + user]
        if missing:
            raise ConfigError(f"judge prompt {where} lacks the placeholder(s) {', '.join(missing)}")
        return cls(system, user)

    @property
    def version(self) -> str:
        return hashlib.sha256((self.system + "\0" + self.user).encode()).hexdigest()[:12]

    def messages(self, query: str, sample: Sample) -> list[dict]:
        values = {"tools": json.dumps([tool.to_openai() for tool in sample.tools], ensure_ascii=False),
                  "gold": json.dumps([gold.to_bfcl() for gold in sample.gold], ensure_ascii=False),
                  "query": query}

        def fill(text: str) -> str:  # one pass: a query holding "{gold}" is not filled in again
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        return [{"role": "system", "content": fill(self.system)}, {"role": "user", "content": fill(self.user)}]


# --- reading the answer ----------------------------------------------------------------------


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_objects(text: str) -> list[dict]:
    """The JSON objects written in ``text``, in order (decoded, never evaluated)."""
    decoder, found, position, starts = json.JSONDecoder(strict=False), [], 0, 0  # strict=False: raw newlines in strings
    while starts < MAX_JSON_STARTS:
        start = text.find("{", position)
        if start < 0:
            break
        starts += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            position = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        position = end
    return found


def _unparseable(detail: str, answer: str) -> JudgeVerdict:
    return JudgeVerdict(False, [f"judge_unparseable: {detail}"], answer=answer)


def parse_verdict(answer: Any) -> JudgeVerdict:
    """A verdict from the judge's answer: the last JSON object with a ``verdict`` key, else a
    ``verdict: valid|invalid`` line; anything else is a ``judge_unparseable`` rejection."""
    if not isinstance(answer, str):
        return _unparseable(f"the answer is {type(answer).__name__}, not text", "")
    kept = answer[:MAX_ANSWER_CHARS]
    text = _THINK.sub(" ", kept)
    for candidate in reversed(json_objects(text)):
        if "verdict" not in candidate:
            continue
        raw = candidate["verdict"]
        decision = _DECISIONS.get(raw.strip().lower()) if isinstance(raw, str) else \
            raw if isinstance(raw, bool) else None
        if decision is None:
            return _unparseable(f"verdict {_one_line(repr(raw), 60)} is neither valid nor invalid", kept)
        reason = _one_line(candidate.get("reason") or "") if isinstance(candidate.get("reason", ""), str) else ""
        return JudgeVerdict(True, answer=kept) if decision else \
            JudgeVerdict(False, [f"judge: {reason or 'no reason given'}"], answer=kept)
    line = _VERDICT_LINE.search(text)
    if line:
        return JudgeVerdict(True, answer=kept) if line.group(1).lower() == "valid" else \
            JudgeVerdict(False, ["judge: no reason given"], answer=kept)
    shown = _one_line(text, 80) or "(empty)"
    return _unparseable(f"no verdict in the answer {shown!r}", kept)


# --- the judge -------------------------------------------------------------------------------


def cache_key(judge_name: str, prompt_version: str, query: str, sample: Sample) -> str:
    gold = [g.to_bfcl() for g in sample.gold]
    text = json.dumps([judge_name, prompt_version, query, gold], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def solved_verdict(answer: str, query: str, sample: Sample) -> JudgeVerdict:
    """A solving judge's verdict: its ``answer`` to ``query`` over ``sample``'s tools, parsed and
    checked against the gold calls."""
    kept = answer[:MAX_ANSWER_CHARS]
    verdict = check_sample(adversarial_sample(sample, query), parse_calls(kept))
    if verdict.valid:
        return JudgeVerdict(True, answer=kept)
    detail = _one_line(verdict.errors[0], 120) if verdict.errors else ""
    return JudgeVerdict(False, [f"judge: solved as {verdict.error_type}" + (f" ({detail})" if detail else "")],
                        answer=kept)


class Judge:
    """Asks ``model`` about each (query, sample) it has not seen, through a JSONL cache:
    ``mode="verify"`` (the default) shows it the gold calls and reads its verdict,
    ``mode="solve"`` has it answer the query as an FC model and checks its calls.

    ``budget``, when given, is asked for one request per question before it is sent (a judge
    behind a paid endpoint); questions it refuses come back as errors."""

    def __init__(self, model: ChatModel, cache_path: str | Path | None = None, prompt: JudgePrompt | None = None,
                 max_new_tokens: int = 256, budget: Budget | None = None, mode: str = "verify"):
        _check_mode(mode)
        self.model = model
        self.mode = mode
        self.prompt = prompt or JudgePrompt.load()
        self.generation = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
        self.budget = budget
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cache: dict[str, dict] = {}
        self.requests = 0
        self._lock = threading.Lock()
        if self.cache_path is not None and os.path.lexists(self.cache_path):  # a looping link is named, not skipped
            for record in iter_jsonl(self.cache_path):
                if isinstance(record.get("key"), str) and isinstance(record.get("valid"), bool):
                    self.cache.setdefault(record["key"], record)

    def key(self, query: str, sample: Sample) -> str:
        return cache_key(self.model.name, self.prompt_version, query, sample)

    @property
    def prompt_version(self) -> str:
        return self.prompt.version if self.mode == "verify" else "solve"

    def _ask(self, queries: list[str], samples: list[Sample]) -> list[Any]:
        if self.mode == "solve":
            asked = [adversarial_sample(sample, query) for query, sample in zip(queries, samples)]
            return self.model.generate([s.messages for s in asked], [s.tools for s in asked], self.generation)
        return self.model.generate([self.prompt.messages(q, s) for q, s in zip(queries, samples)],
                                   [[] for _ in queries], self.generation)

    def judge(self, queries: list[str], samples: list[Sample]) -> list[JudgeVerdict]:
        """One verdict per query; cached pairs and repeats within the call are asked once."""
        keys = [self.key(q, s) for q, s in zip(queries, samples, strict=True)]
        first: dict[str, int] = {}
        for index, key in enumerate(keys):
            if key not in self.cache:
                first.setdefault(key, index)
        to_ask = list(first.items())
        granted = len(to_ask) if self.budget is None else self.budget.take(len(to_ask))
        asked, refused = to_ask[:granted], to_ask[granted:]
        answers = self._ask([queries[i] for _, i in asked], [samples[i] for _, i in asked]) if asked else []
        fresh: dict[str, JudgeVerdict] = {}
        records = []
        for (key, index), answer in zip(asked, answers, strict=True):
            if answer.error is not None:
                fresh[key] = JudgeVerdict(False, error=f"judge request failed: {answer.error}")
                continue
            verdict = solved_verdict(answer.text, queries[index], samples[index]) if self.mode == "solve" else \
                parse_verdict(answer.text)
            fresh[key] = verdict
            records.append({"key": key, "judge": self.model.name, "prompt": self.prompt_version,
                            "query": queries[index], "gold": [g.to_bfcl() for g in samples[index].gold],
                            "valid": verdict.valid, "reasons": verdict.reasons, "answer": verdict.answer[:2000],
                            "time": round(time.time(), 3)})
        for key, _ in refused:
            fresh[key] = JudgeVerdict(False, error=NOT_ASKED)
        with self._lock:
            self.requests += len(asked)
            for record in records:
                self.cache[record["key"]] = record
            if records and self.cache_path is not None:
                append_jsonl(self.cache_path, records)
        return [fresh[key] if key in fresh else self._from_cache(key) for key in keys]

    def _from_cache(self, key: str) -> JudgeVerdict:
        record = self.cache[key]
        return JudgeVerdict(record["valid"], list(record.get("reasons") or []), answer=record.get("answer", ""),
                            cached=True)


# --- settings --------------------------------------------------------------------------------


def _check_mode(mode: str) -> None:
    if mode not in JUDGE_MODES:
        raise ConfigError(f"judge_mode must be one of {', '.join(JUDGE_MODES)} (got {mode!r})")


def check_judge_settings(config: Any) -> None:
    """Raise :class:`ConfigError` for judge settings that cannot work (the ``judge_*`` fields)."""
    model, endpoint = getattr(config, "judge_model", None), getattr(config, "judge_endpoint", None)
    if endpoint is not None and not model:
        raise ConfigError("judge_endpoint needs judge_model: the model name that server serves")
    if endpoint is not None:
        check_http_url("judge_endpoint", endpoint)
    check_env_name("judge_api_key_env", getattr(config, "judge_api_key_env", "OPENAI_API_KEY"))
    _check_mode(getattr(config, "judge_mode", "verify"))
    if getattr(config, "judge_max_tokens", 1) < 1:
        raise ConfigError(f"judge_max_tokens must be at least 1 (got {config.judge_max_tokens})")
    if model and getattr(config, "judge_prompt", None):
        JudgePrompt.load(config.judge_prompt)


def build_judge(config: Any, budget: Budget | None = None, model: ChatModel | None = None) -> Judge | None:
    """The judge a config's ``judge_*`` settings name, or None when ``judge_model`` is unset.
    Its cache is ``judge_cache``, else ``judge_cache.jsonl`` in the run folder (``out``)."""
    name = getattr(config, "judge_model", None)
    if not name:
        return None
    if model is None:
        from toolduel.models import load_model

        endpoint = getattr(config, "judge_endpoint", None)
        if endpoint:  # the client settings of a config that has them (the black-box attack's) apply to the judge too
            client = {key: getattr(config, key) for key in ("timeout", "max_retries", "backoff_base", "max_concurrency")
                      if hasattr(config, key)}
            model = load_model({"backend": "endpoint", "base_url": endpoint, "model": name,
                                "api_key_env": getattr(config, "judge_api_key_env", "OPENAI_API_KEY"), **client})
            if budget is not None:  # a retry is a request the budget pays for
                model.retry_permit = budget.permit
        else:
            model = load_model({"backend": "transformers", "path": name,
                                "batch_size": getattr(config, "batch_size", 8)})
    cache = getattr(config, "judge_cache", None)
    out = getattr(config, "out", None)
    cache_path = Path(cache) if cache else Path(out) / JUDGE_CACHE if out else None
    return Judge(model, cache_path, JudgePrompt.load(getattr(config, "judge_prompt", None)),
                 max_new_tokens=getattr(config, "judge_max_tokens", 256),
                 budget=budget if getattr(config, "judge_endpoint", None) else None,
                 mode=getattr(config, "judge_mode", "verify"))
