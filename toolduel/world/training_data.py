"""Warm-start data of the world: training rows for the FC model and the query model.

- FC model: tools and a ``plain`` user query -> the gold calls, or :data:`NO_CALL_REPLY` when
  no tool fits (:func:`toolduel.prompts.fc_target`). Plain phrasing only: the gap to perturbed
  queries is what the game must find. Rows are conversations of a few such turns over one
  tool list (:func:`toolduel.prompts.fc_conversation`).
- Query model: tools, the gold calls, a seed query and optionally a style -> a query asking
  for the same calls in that style: half the rows in one phrasing kind, half in a combination
  of two or three (:data:`~toolduel.world.phrasing.COMBINATIONS`). Without a style line it
  writes any style. A quarter of the rows also ask for a tool move, and their query is followed
  by the edits that make it, in the referee's grammar (:mod:`toolduel.referee.tool_grammar`).

Targets are kept in the ``train`` split, so no model learns a held-out query by heart.
"""

from __future__ import annotations

import dataclasses
import random

from toolduel.prompts import (
    EDITS_HEADER,
    fc_conversation,
    query_model_messages,
    tools_json,
)
from toolduel.schema import Call, GoldCall, Sample
from toolduel.world.functions import all_functions, functions_by_name
from toolduel.world.generator import (
    KINDS,
    generate_samples,
    render_query,
    rephrase,
    sample_arguments,
    split_of,
)
from toolduel.world.phrasing import COMBINATIONS, PHRASINGS, PLAIN
from toolduel.world.tool_edits import TOOL_MOVES, move_asked, written_edits

FC_KIND_WEIGHTS = (0.7, 0.15, 0.15)  # one_call, two_call, no_call


def _more_turns(first: Sample, turns: int, rng: random.Random,
                phrasings: tuple[str, ...] = (PLAIN,)) -> list[Sample]:
    """Further requests, each phrased in one of ``phrasings``, that ``first``'s tool list can
    serve (or, one time in seven, cannot: a function of an unrelated domain is asked for)."""
    offered = [functions_by_name()[t.name] for t in first.tools]
    unrelated = [f for f in all_functions() if not any(f.domain == o.domain for o in offered)]
    tools = {t.name: t for t in first.tools}
    out: list[Sample] = []
    while len(out) < turns:
        roll = rng.random()
        if roll < 1 / 7:
            kind, picks = "no_call", [rng.choice(unrelated)]
        elif roll < 0.8 or len(offered) < 2:
            kind, picks = "one_call", [rng.choice(offered)]
        else:
            kind, picks = "two_call", rng.sample(offered, 2)
        calls = [Call(f.name, sample_arguments(f, rng)) for f in picks]
        phrasing = phrasings[0] if len(phrasings) == 1 else rng.choice(phrasings)  # plain draws stay as they were
        query = render_query(calls, phrasing, rng)
        if query is None or split_of(query) != "train":
            continue
        gold = [GoldCall.from_call(c, tools[c.name]) for c in calls] if kind != "no_call" else []
        out.append(Sample(id=f"{first.id}-turn{len(out) + 1}", tools=first.tools,
                          messages=[{"role": "user", "content": query}], gold=gold, category=kind))
    return out


def fc_examples(n: int, seed: int = 0, turns: int = 3, phrasings: tuple[str, ...] = (PLAIN,),
                kind_weights: tuple[float, float, float] = FC_KIND_WEIGHTS) -> list[dict]:
    """Rows holding ``n`` answers, ``turns`` per conversation (the first turn from the
    generator's kind mix, the others from :func:`_more_turns`). The warm start sees plain
    queries only; a reference model (``BuildBudget.fc_phrasings``) sees every phrasing."""
    rng = random.Random(f"fc-warm:{seed}" if phrasings == (PLAIN,) else f"fc-warm:{seed}:{','.join(phrasings)}")
    firsts = generate_samples(-(-n // turns), seed=seed, kinds=KINDS, phrasings=phrasings,
                              kind_weights=kind_weights, id_prefix="fc-warm")
    return [fc_conversation([first, *_more_turns(first, turns - 1, rng, phrasings)]) for first in firsts]


def query_examples(n: int, seed: int = 0, styled_fraction: float = 0.8, edits_fraction: float = 0.25) -> list[dict]:
    """Rows pairing a plain seed with the same request phrased in a random kind or combination
    of kinds; ``edits_fraction`` of them also ask for a tool move and write its edits. Targets are
    kept in the ``train`` split so the query model never learns a held-out query by heart."""
    rng, tools_rng = random.Random(f"query-warm:{seed}"), random.Random(f"query-warm-tools:{seed}")
    seeds = generate_samples(2 * n, seed=seed + 7919, phrasings=(PLAIN,), kind_weights=FC_KIND_WEIGHTS,
                             id_prefix="query-warm")
    rows: list[dict] = []
    for sample in seeds:
        if len(rows) == n:
            break
        style = rng.choice(PHRASINGS if rng.random() < 0.5 else COMBINATIONS)
        target = next((q for q in (rephrase(sample, style, rng) for _ in range(4))
                       if q is not None and split_of(q) == "train"), None)
        if target is None:
            continue
        shown_style = style if rng.random() < styled_fraction else None
        sample, target = _with_tool_edits(sample, target, tools_rng, edits_fraction)
        rows.append({"messages": [*query_model_messages(sample, style=shown_style),
                                  {"role": "assistant", "content": target}],
                     "tools": tools_json(sample.tools), "style": style})
    return rows


def _with_tool_edits(sample: Sample, target: str, rng: random.Random, fraction: float) -> tuple[Sample, str]:
    """One row in ``fraction`` asks for a tool move (:data:`TOOL_MOVES`) and its target writes
    the edits that make it, in the referee's grammar (:func:`written_edits`)."""
    if rng.random() >= fraction:
        return sample, target
    move = rng.choice(TOOL_MOVES)
    lines = written_edits(sample, move, rng)
    if lines is None:
        return sample, target
    return (dataclasses.replace(sample, meta={**sample.meta, **move_asked(sample, move)}),
            "\n".join([target, EDITS_HEADER, *lines]))


def seed_requests(n: int, seed: int, id_prefix: str) -> list[Sample]:
    """Plain train-split requests for the query model to rewrite: one call or two. A no-call seed
    rewritten by the query model may well ask for a tool, which the rule check cannot tell, so
    no-call skills are kept by replay instead."""
    return generate_samples(n, seed=seed, kinds=("one_call", "two_call"), phrasings=(PLAIN,), kind_weights=(0.8, 0.2),
                            split="train", id_prefix=id_prefix)


def replay_requests(n: int, seed: int, id_prefix: str, kinds: tuple[str, ...] | None = None) -> list[Sample]:
    """Plain train-split samples of every kind (one call, two calls, no call) in the warm start's
    mix, or of the given ``kinds`` only, replayed in defence."""
    if kinds is not None:
        return generate_samples(n, seed=seed, kinds=kinds, phrasings=(PLAIN,), split="train", id_prefix=id_prefix)
    return generate_samples(n, seed=seed, phrasings=(PLAIN,), kind_weights=FC_KIND_WEIGHTS, split="train",
                            id_prefix=id_prefix)
