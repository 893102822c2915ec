"""Rewards of both players, in TRL's calling convention: ``reward(completions, **columns) -> list[float]``.

- The FC reward is the checker's score, so the number the FC model trains on and the number
  the evaluation reports cannot drift apart (partial credit is an option for tiny models,
  whose GRPO groups are otherwise often all-zero).
- The query reward is ``validity * (1 - p_F)`` above the solvability floor: the query model is
  paid when the FC model fails on a query that still asks for the gold calls and that can be
  answered (:meth:`~toolduel.referee.outcome.AttackOutcome.solvable`: the FC model right on
  some of its ``k`` answers, or a reference solver right on it). ``p_F`` is the FC model's mean
  score over ``k`` samples; below the floor (``p_F = 0``, no reference) the query earns 0, so
  with ``k = 4`` the pay is a band over ``p_F`` that starts at ``1/k``: an impossible query
  earns nothing. Variants: ``learnability`` pays ``4 p (1 - p)``, most where the FC model
  sometimes succeeds (a weakness it can learn to fix); ``band`` pays ``1 - p`` only for
  ``band_low <= p <= band_high``. An invalid query gets ``invalid_penalty``, by default None:
  TRL leaves a None out of its group's baseline and gives it no advantage, so invalid queries
  do not swamp a group's signal. Near-duplicates within a batch and overlong queries lose a
  little. A query that could not be scored at all (the endpoint never answered, the judge
  could not be asked) gets None too.

Dataset rows carry their sample as JSON in the ``sample`` column (``Sample.to_dict()``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from toolduel.checker import check_sample, partial_credit, score
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.parsing import parse_calls
from toolduel.referee.outcome import AttackOutcome, score_queries
from toolduel.referee.validity import Lexicon
from toolduel.schema import Sample

REWARD_FORMS = ("attack", "learnability", "band")


def completion_text(completion: Any) -> str:
    """TRL passes plain strings, or for conversational data a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def as_sample(value: Any) -> Sample:
    if isinstance(value, Sample):
        return value
    return Sample.from_dict(json.loads(value) if isinstance(value, str) else value)


# --- FC reward -------------------------------------------------------------------------------


def fc_reward(completions: list, sample: list, **kwargs: Any) -> list[float]:
    """1.0 where the completion makes exactly the gold calls (BFCL's rules), else 0.0."""
    return [score(check_sample(as_sample(s), parse_calls(completion_text(c)))) for c, s in zip(completions, sample)]


@dataclass
class FCReward:
    """The FC reward with settings; picklable (a class, not a closure)."""

    partial: bool = False
    __name__ = "fc_reward"  # TRL logs rewards by function name

    def __call__(self, completions: list, sample: list, **kwargs: Any) -> list[float]:
        if not self.partial:
            return fc_reward(completions, sample)
        return [partial_credit(as_sample(s), parse_calls(completion_text(c))) for c, s in zip(completions, sample)]


def get_fc_reward(partial: bool = False) -> FCReward:
    return FCReward(partial=partial)


# --- query reward: pure parts ----------------------------------------------------------------


def attack_value(fc_success: float, form: str = "attack", band: tuple[float, float] = (0.0, 1.0)) -> float:
    """What a valid query earns given the FC model's mean success ``p`` on it."""
    if form == "attack":
        return 1.0 - fc_success
    if form == "learnability":
        return 4.0 * fc_success * (1.0 - fc_success)
    if form == "band":
        low, high = band
        return 1.0 - fc_success if low <= fc_success <= high else 0.0
    raise ValueError(f"unknown reward form {form!r}; choose one of {REWARD_FORMS}")


_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def near_duplicates(queries: list[str], threshold: float = 0.9) -> list[bool]:
    """True for each query whose word set overlaps an EARLIER one's by Jaccard >= threshold
    (the first of a group is not penalised)."""
    seen: list[set[str]] = []
    flags = []
    for query in queries:
        words = _words(query)
        flags.append(any(words and len(words & other) / len(words | other) >= threshold for other in seen))
        seen.append(words)
    return flags


@dataclass
class QueryRewardSettings:
    form: str = "attack"
    floor: bool = True  # pay only answerable failures (the solvability floor)
    invalid_penalty: float | None = None  # None: left out of the update
    duplicate_penalty: float = 0.2
    duplicate_threshold: float = 0.9
    length_penalty_per_char: float = 0.0  # past `free_chars`
    free_chars: int = 200
    band: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.form not in REWARD_FORMS:
            raise ValueError(f"reward form must be one of {REWARD_FORMS}, got {self.form!r}")


def query_rewards(queries: list[str], valid: list[bool], fc_success: list[float | None], solvable: list[bool],
                  settings: QueryRewardSettings) -> list[float | None]:
    """Pure: rewards from validity, the FC model's success (None for invalid queries) and
    whether each query is answerable (see the module docstring)."""
    duplicates = near_duplicates(queries, settings.duplicate_threshold)
    rewards: list[float | None] = []
    for query, is_valid, success, answerable, duplicate in zip(queries, valid, fc_success, solvable, duplicates,
                                                                strict=True):
        if not is_valid or success is None:
            rewards.append(settings.invalid_penalty)
            continue
        below_floor = settings.floor and not answerable
        reward = 0.0 if below_floor else attack_value(success, settings.form, settings.band)
        reward -= settings.duplicate_penalty if duplicate else 0.0
        reward -= settings.length_penalty_per_char * max(0, len(query) - settings.free_chars)
        rewards.append(reward)
    return rewards


# --- query reward: against a live FC model (a TRL reward function) ------------------------


class QueryReward:
    """``validity * (1 - p_F)`` above the solvability floor, against a frozen FC model, as a TRL
    reward function.

    Keeps the outcomes of every batch in ``history`` and the time spent scoring them in
    ``seconds`` (both cleared by the caller) for the attack log."""

    __name__ = "query_reward"

    def __init__(self, fc_model: ChatModel, k: int = 4, settings: QueryRewardSettings | None = None,
                 generation: GenerationConfig | None = None, lexicon: Lexicon | None = None, judge: Any = None):
        self.fc_model = fc_model
        self.k = k
        self.settings = settings or QueryRewardSettings()
        self.generation = generation or GenerationConfig(max_new_tokens=96, temperature=1.0 if k > 1 else 0.0)
        self.lexicon = lexicon
        self.judge = judge
        self.history: list[list[AttackOutcome]] = []
        self.seconds = 0.0

    def __call__(self, completions: list, sample: list, **kwargs: Any) -> list[float | None]:
        """Rewards in TRL's convention; None for a query that could not be scored (``failed``)."""
        started = time.perf_counter()
        queries = [completion_text(c).strip() for c in completions]
        outcomes = self.outcomes([as_sample(s) for s in sample], queries, kwargs.get("trainer_state"))
        self.history.append(outcomes)
        self.seconds += time.perf_counter() - started
        rewards = query_rewards(queries, [o.valid for o in outcomes], [o.fc_success for o in outcomes],
                                [o.solvable for o in outcomes], self.settings)
        return [None if outcome.failed else reward for outcome, reward in zip(outcomes, rewards)]

    def outcomes(self, samples: list[Sample], queries: list[str], trainer_state: Any = None) -> list[AttackOutcome]:
        """The outcome of each query (the black-box attack scores through its ledger instead)."""
        return score_queries(self.fc_model, samples, queries, self.k, self.generation, self.lexicon, self.judge)
