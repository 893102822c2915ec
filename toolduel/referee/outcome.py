"""The referee's account of a query: is it valid, what did the FC model answer, did it fail,
and could it have been answered?

:func:`score_queries` is the rollout referee of both programs: the validity gate
(:func:`gate`: the rule check of :mod:`toolduel.referee.validity`, then the judge of
:mod:`toolduel.referee.judge` for queries that pass), then ``k`` answers of the FC model to
each valid query, checked against the gold calls (:func:`score_answers`). The result is one
:class:`AttackOutcome` per query, which the rewards, the harvest, the evaluation of attacks
and the black-box ledger all read. :func:`pool_record` turns a valid outcome into an
adversarial pool record (layout: :mod:`toolduel.run_files`).

A valid query that the FC model fails is a *weakness* only if it is answerable (the
solvability floor): the FC model is right on some of its ``k`` answers (``0 < p_F``), or a
reference solver (the judge in ``solve`` mode) answered it, or, for a query answered against an
edited tool list (the tool surface), the FC model answers it right against the seed's own list
(:func:`needs_unedited_answer`). A query nobody answers may be
impossible in a way the gate cannot see, and paying for it teaches the query model to write
impossible queries.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from toolduel.checker import check_sample
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.parsing import parse_calls
from toolduel.prompts import EDIT_MOVE_KEY, STYLE_KEY, TOOL_CANDIDATES_KEY
from toolduel.referee.tool_grammar import applied, split_completion, written_edit_reasons
from toolduel.referee.tool_list import REASONS, check_tool_edit, read_edit
from toolduel.referee.validity import Lexicon, check_query
from toolduel.schema import SchemaError, Sample, Tool

# A seed's meta may name an edit of the tool list the FC model answers against (the attack's
# tool surface, :mod:`toolduel.specs`): the move, and the edited tools and gold calls themselves.
TOOL_MOVE_KEY, ANSWER_TOOLS_KEY, ANSWER_GOLD_KEY = "tool_move", "answer_tools", "answer_gold"


@dataclass
class AttackOutcome:
    """What one query did: validity (with reasons), the FC model's answers and verdicts.

    ``error`` says why the query could not be scored at all (every FC answer failed at the
    endpoint, the judge could not be asked, the request budget was spent): such a query is
    neither valid nor invalid, and its reward is None (TRL gives it no advantage)."""

    query: str
    valid: bool
    reasons: list[str]
    fc_outputs: list[str] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    fc_success: float | None = None
    error: str | None = None
    fc_errors: list[str] = field(default_factory=list)  # answers that never came (left out of p_F)
    # a reference answered it right: a solving judge, or the FC model on the seed's own tool list
    reference_solved: bool = False
    style: str | None = None  # the style the query was asked in (toolduel.specs)
    tool_move: str | None = None  # the move the tool list was edited by before the FC model answered
    fc_answers: int = 0  # answers asked of the FC model: k, and k more on the seed's own tool list

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def fooled(self) -> bool:
        """Valid, scored, and the FC model wrong on at least one answer."""
        return self.valid and self.fc_success is not None and self.fc_success < 1.0

    @property
    def solvable(self) -> bool:
        """Answerable: the FC model right on some answer, or a reference solver right on it."""
        return self.reference_solved or (self.fc_success is not None and self.fc_success > 0.0)

    def weakness(self, floor: bool = True) -> bool:
        """A real FC error: fooled and, with the solvability ``floor``, answerable."""
        return self.fooled and (self.solvable or not floor)


def written_parts(seed: Sample, query: str) -> tuple[str, list[str]]:
    """The request ``query`` writes and the tool edits after it, where ``seed`` asked for a tool
    move to be written (``meta["edit_move"]``, ``tool_edits: written``); elsewhere the whole
    completion is the request, and no edit of the tool list is read from it."""
    return split_completion(query) if seed.meta.get(EDIT_MOVE_KEY) else (query, [])


def candidates_of(seed: Sample) -> list[Tool]:
    """The tools an edit may add to ``seed``'s list (``meta["tool_candidates"]``); none where unreadable."""
    try:
        return [Tool.from_any(t) for t in seed.meta.get(TOOL_CANDIDATES_KEY) or []]
    except (SchemaError, TypeError, ValueError, AttributeError):
        return []


def adversarial_sample(seed: Sample, query: str, edited: bool = True) -> Sample:
    """The seed sample with its last user message replaced by the request ``query`` writes, and
    the tool list it is answered against: the seed's own, edited by the move its meta names
    (``meta["answer_tools"]`` and ``meta["answer_gold"]``, a drawn tool move) and then by the edits
    ``query`` writes after its request where the seed asked for them (:func:`written_parts`,
    :mod:`toolduel.referee.tool_grammar`), the gold calls with them; ``edited=False``: the seed's own."""
    request, lines = written_parts(seed, query)
    messages = [dict(m) for m in seed.messages]
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        messages.append({"role": "user", "content": request})
    else:
        messages[last_user]["content"] = request
    meta = dict(seed.meta)
    drawn_tools, drawn_gold = meta.pop(ANSWER_TOOLS_KEY, None), meta.pop(ANSWER_GOLD_KEY, None)
    tools, gold = seed.tools, seed.gold
    if edited and drawn_tools is not None and drawn_gold is not None:
        tools, gold = read_edit(drawn_tools, drawn_gold)
    if edited and lines:
        tools, gold = applied(tools, gold, lines, candidates_of(seed))
    return dataclasses.replace(seed, tools=list(tools), gold=list(gold), messages=messages, meta=meta)


def is_edited(seed: Sample, query: str) -> bool:
    """Whether ``query`` is answered against an edited tool list: a drawn move's or its own edits."""
    return ANSWER_TOOLS_KEY in seed.meta or bool(written_parts(seed, query)[1])


def edit_reasons(seed: Sample, query: str, lexicon: Lexicon) -> list[str]:
    """Why the tool list ``query`` is answered against (see :func:`adversarial_sample`) breaks
    ``seed``'s oracle: a drawn move's edit that cannot be read, an edit written that the grammar's
    rules refuse (:func:`~toolduel.referee.tool_grammar.written_edit_reasons`), or an edited list
    whose gold calls are not the one right answer (:func:`~toolduel.referee.tool_list.check_tool_edit`)."""
    tools, gold = seed.tools, seed.gold
    if ANSWER_TOOLS_KEY in seed.meta:
        try:
            tools, gold = read_edit(list(seed.meta[ANSWER_TOOLS_KEY]), list(seed.meta.get(ANSWER_GOLD_KEY)))
        except (SchemaError, TypeError, ValueError, AttributeError, KeyError):
            return [f"tool_edit_unreadable: {REASONS['tool_edit_unreadable']}"]
    reasons, tools, gold = written_edit_reasons(tools, gold, written_parts(seed, query)[1], candidates_of(seed),
                                                lexicon.intent_words)
    return reasons or check_tool_edit(seed.tools, seed.gold, tools, gold, lexicon.purpose)


def gate(seeds: list[Sample], queries: list[str], lexicon: Lexicon | None = None,
         judge: Any = None) -> list[AttackOutcome]:
    """Validity of each query: the rule check of its request (with ``lexicon``, see :class:`Lexicon`)
    and, where the tool list it is answered against is edited, the edit's check (:func:`edit_reasons`),
    then, for those that pass, the judge (if any). A judge that could not be asked leaves the query failed."""
    lexicon = lexicon or Lexicon()
    outcomes = []
    for seed, query in zip(seeds, queries, strict=True):
        validity = check_query(written_parts(seed, query)[0], seed, lexicon)
        if is_edited(seed, query):
            validity.reasons += edit_reasons(seed, query, lexicon)
            validity.valid = validity.valid and not validity.reasons
        outcomes.append(AttackOutcome(query=query, valid=validity.valid, reasons=validity.reasons,
                                      style=seed.meta.get(STYLE_KEY), tool_move=seed.meta.get(TOOL_MOVE_KEY)))
    passed = [i for i, o in enumerate(outcomes) if o.valid]
    if judge is not None and passed:  # the judge reads the request, over the tool list it is answered against
        asked = [adversarial_sample(seeds[i], queries[i]) for i in passed]
        for index, verdict in zip(passed, judge.judge([sample.query for sample in asked], asked)):
            if verdict.error is not None:
                outcomes[index].valid, outcomes[index].error = False, verdict.error
            elif not verdict.valid:
                outcomes[index].valid, outcomes[index].reasons = False, list(verdict.reasons)
            else:  # a solving judge that passes a query has answered it
                outcomes[index].reference_solved = getattr(judge, "mode", "verify") == "solve"
    return outcomes


def answer_text(generation: Any) -> str:
    """What the FC model answered, as text: its text, then its structured ``tool_calls`` (an
    endpoint's) as JSON."""
    if not generation.tool_calls:
        return generation.text
    calls = json.dumps(generation.tool_calls, ensure_ascii=False)
    return f"{generation.text}\n{calls}" if generation.text else calls


def score_answers(outcome: AttackOutcome, sample: Sample, generations: list) -> AttackOutcome:
    """Check the FC model's answers to one attacked sample; ``fc_success`` is their mean score.
    Answers that never came are left out; when none came, the outcome fails with the first error."""
    outcome.fc_answers += len(generations)
    for generation in generations:
        if generation.error is not None:
            outcome.fc_errors.append(generation.error)
            continue
        verdict = check_sample(sample, parse_calls(generation.text, tool_calls=generation.tool_calls))
        outcome.fc_outputs.append(answer_text(generation))
        outcome.verdicts.append(verdict.to_dict())
    if outcome.verdicts:
        outcome.fc_success = sum(v["valid"] for v in outcome.verdicts) / len(outcome.verdicts)
    else:
        outcome.error = outcome.fc_errors[0] if outcome.fc_errors else "the FC model gave no answer"
    return outcome


def score_queries(fc_model: ChatModel, seeds: list[Sample], queries: list[str], k: int = 1,
                  generation: GenerationConfig | None = None, lexicon: Lexicon | None = None,
                  judge: Any = None) -> list[AttackOutcome]:
    """Check each query's validity, then let the FC model answer the valid ones ``k`` times."""
    outcomes = gate(seeds, queries, lexicon, judge)
    valid_indices = [i for i, o in enumerate(outcomes) if o.valid]
    attacked = [adversarial_sample(seeds[i], outcomes[i].query) for i in valid_indices]
    repeated = [sample for sample in attacked for _ in range(k)]
    generations = fc_model.generate([s.messages for s in repeated], [s.tools for s in repeated], generation)
    for position, index in enumerate(valid_indices):
        score_answers(outcomes[index], attacked[position], generations[position * k:(position + 1) * k])
    unsolved = [i for i in valid_indices if needs_unedited_answer(seeds[i], outcomes[i])]
    if unsolved:  # an edited tool list that no answer got right: is the query answerable on the seed's own?
        plain = [adversarial_sample(seeds[i], outcomes[i].query, edited=False) for i in unsolved for _ in range(k)]
        answers = fc_model.generate([s.messages for s in plain], [s.tools for s in plain], generation)
        for position, index in enumerate(unsolved):
            solve_unedited(outcomes[index], plain[position * k], answers[position * k:(position + 1) * k])
    return outcomes


def needs_unedited_answer(seed: Sample, outcome: AttackOutcome) -> bool:
    """Whether ``outcome`` is a valid query answered against an edited tool list that no answer got
    right: the FC model then answers it against the seed's own list, and a right answer there shows
    the query answerable (the edit was checked to keep the gold calls the one right answer, so the
    failure is the edit's doing: a weakness of the tool surface)."""
    return is_edited(seed, outcome.query) and outcome.valid and outcome.fc_success == 0.0 \
        and not outcome.reference_solved


def solve_unedited(outcome: AttackOutcome, sample: Sample, generations: list) -> None:
    """Mark ``outcome`` answerable (``reference_solved``) when an answer to ``sample`` (the query
    against the seed's own tools) is right."""
    outcome.fc_answers += len(generations)
    outcome.reference_solved = any(check_sample(sample, parse_calls(g.text, tool_calls=g.tool_calls)).valid
                                   for g in generations if g.error is None)


def step_stats(outcomes: list[AttackOutcome], floor: bool = True) -> dict:
    """Rates over a batch of scored queries (those that could not be scored, ``failed``: endpoint,
    judge or budget, are counted apart): validity; attack success, the mean of ``1 - p_F`` over
    the valid queries that are weaknesses (answerable ones only, with the solvability ``floor``),
    invalid and other queries counting 0; the share of weaknesses; and the share of valid queries
    that no answer got right and no reference solved (``unanswered``, what the floor keeps out)."""
    scored = [o for o in outcomes if not o.failed]
    n, valid = len(scored) or 1, [o for o in scored if o.valid]
    return {
        "queries": len(outcomes),
        "failed": len(outcomes) - len(scored),
        "validity_rate": len(valid) / n,
        "attack_success_rate": sum(1.0 - o.fc_success for o in scored if o.weakness(floor)) / n,
        "weakness_rate": sum(o.weakness(floor) for o in scored) / n,
        "unanswered_rate": sum(not o.solvable for o in valid) / (len(valid) or 1),
    }


def pool_record(record_id: str, round_index: int, seed: Sample, outcome: AttackOutcome, query_checkpoint: str,
                fc_checkpoint: str) -> dict:
    """A valid query's adversarial pool record, with provenance (layout: :mod:`toolduel.run_files`):
    its request as ``query``, and the tool edits it wrote (:mod:`toolduel.referee.tool_grammar`) as
    ``tool_edits``."""
    failing = next((v for v in outcome.verdicts if not v["valid"]), None)
    request, edits = written_parts(seed, outcome.query)
    return {
        "id": record_id, "round": round_index, "seed_id": seed.id,
        "query_checkpoint": query_checkpoint, "fc_checkpoint": fc_checkpoint,
        "query": request, "tool_edits": edits, "seed_query": seed.query, "phrasing": outcome.style,
        "tool_move": outcome.tool_move,
        "sample": adversarial_sample(seed, outcome.query).to_dict(),
        "fc_outputs": outcome.fc_outputs, "verdicts": outcome.verdicts, "fc_answers": outcome.fc_answers,
        "fc_success": outcome.fc_success,
        "attack_success": outcome.fooled, "solvable": outcome.solvable, "reference_solved": outcome.reference_solved,
        "error_type": failing["error_type"] if failing else None, "kind": failing["kind"] if failing else None,
    }
