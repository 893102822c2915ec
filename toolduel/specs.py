"""The attack's spec: the style a query is asked in and, with the tool surface on, the move
that edits the tool list it is answered against; drawn evenly for the attack, towards what
paid for the harvest.

- **Style**: every prompt of the attack carries one, drawn evenly from a space (a perturbation
  kind, or a combination of two or three, :data:`~toolduel.world.phrasing.COMBINATIONS`), so
  GRPO teaches the query model to break the FC model *within* each style.
- **Tool move** (``attack_surface: query,tools``, world seeds): after the query is written and
  judged valid, the FC model answers it against the seed's tool list edited by a move of
  :mod:`toolduel.world.tool_edits` (or ``unchanged``), the gold calls renamed with it. The
  query model never sees the move: the edited tools and gold ride in the seed's meta, which
  :func:`toolduel.referee.outcome.adversarial_sample` reads.

The attack's log counts, per style and per move, the queries asked and the weaknesses found.
The harvest then asks for the specs that pay: each harvested seed's style and move are drawn
by Thompson sampling over those counts (a Beta posterior of each one's weakness rate, one
dimension at a time), updated with the harvest's own outcomes as it goes
(:func:`toolduel.duel.harvest.attack_records`), so it concentrates where the FC model is weak
while still trying the rest; untargeted augmentation draws them evenly.

A seed carries its spec in ``meta["query_style"]`` (shown to the query model by
:func:`toolduel.prompts.query_model_messages`) and ``meta["tool_move"]``; every harvest and
pool record keeps both as provenance.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolduel import run_files as files
from toolduel.prompts import EDIT_MOVE_KEY, STYLE_KEY
from toolduel.referee.outcome import ANSWER_GOLD_KEY, ANSWER_TOOLS_KEY, TOOL_MOVE_KEY
from toolduel.schema import Sample
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS
from toolduel.world.tool_edits import TOOL_MOVES, UNCHANGED, edit_tools, move_asked, written_edits

STYLE_SPACES = {"none": (), "kinds": PERTURBATIONS, "composed": (*PERTURBATIONS, *COMBINATIONS)}
SURFACES = ("query", "tools")
HARVEST_STYLES = ("targeted", "uniform")
TOOL_EDITS = ("drawn", "written")
PRIOR_QUERIES = 4
# A spec's dimensions: the seed's meta key, and the attack log's and the records' field.
DIMENSIONS = {STYLE_KEY: "styles", TOOL_MOVE_KEY: "tool_moves"}


def style_space(name: str) -> tuple[str, ...]:
    """The styles of a space (``none``: no style line, the query model picks its own)."""
    if name not in STYLE_SPACES:
        raise ValueError(f"unknown style space {name!r}; use one of {', '.join(STYLE_SPACES)}")
    return STYLE_SPACES[name]


def surfaces_of(setting: str) -> tuple[str, ...]:
    """The attack surfaces a setting names (``query``, ``query,tools``); a ValueError names a bad one."""
    surfaces = tuple(s.strip() for s in setting.split(",") if s.strip())
    if not surfaces or set(surfaces) - set(SURFACES):
        raise ValueError(f"attack_surface takes a comma-separated list of {', '.join(SURFACES)} (got {setting!r})")
    if "query" not in surfaces:
        raise ValueError("attack_surface must include query: the query model writes every attack, and the tool "
                         "list is edited beside it (query,tools)")
    return surfaces


def written_edits_of(config: Any) -> bool:
    """Whether ``config``'s query model writes the tool edits (``tool_edits: written``) rather than
    having a drawn move applied."""
    return getattr(config, "tool_edits", "drawn") == "written"


def spec_spaces(styles: str, surfaces: str) -> dict[str, tuple[str, ...]]:
    """Each dimension's space: the styles, and the tool moves (with ``unchanged``) when the tool surface is on."""
    return {STYLE_KEY: style_space(styles),
            TOOL_MOVE_KEY: (UNCHANGED, *TOOL_MOVES) if "tools" in surfaces_of(surfaces) else ()}


def specified(seed: Sample, written: bool = False, **spec: str | None) -> Sample:
    """A copy of ``seed`` with ``spec`` (meta keys -> values) in its meta. A tool move other than
    ``unchanged`` is applied here (the same edit for the same seed), its tools and gold calls kept
    in the meta for the FC model's turn; or, ``written``, asked of the query model, which writes
    the edits itself (``meta["edit_move"]``, with the tools it may add); a move with nothing to
    act on becomes None."""
    meta = {**seed.meta, **spec}
    move = spec.get(TOOL_MOVE_KEY)
    if move not in (None, UNCHANGED) and written:
        meta |= move_asked(seed, move if written_edits(seed, move, random.Random(0)) is not None else None)
        meta[TOOL_MOVE_KEY] = meta[EDIT_MOVE_KEY]
    elif move not in (None, UNCHANGED):
        edited = edit_tools(seed, move, random.Random(f"tool-move:{seed.id}:{move}"))
        meta[TOOL_MOVE_KEY] = None if edited is None else move
        if edited is not None:
            meta[ANSWER_TOOLS_KEY] = [t.to_openai() for t in edited.tools]
            meta[ANSWER_GOLD_KEY] = [g.to_bfcl() for g in edited.gold]
    return dataclasses.replace(seed, meta=meta)


def count_specs(values: Iterable[str | None], weaknesses: Iterable[bool]) -> dict[str, list[int]]:
    """``{value: [queries, weaknesses]}`` over queries of one dimension (None values left out)."""
    counts: dict[str, list[int]] = {}
    for value, weak in zip(values, weaknesses, strict=True):
        if value is not None:
            entry = counts.setdefault(value, [0, 0])
            entry[0] += 1
            entry[1] += int(weak)
    return counts


def count_outcomes(outcomes: list, floor: bool) -> dict[str, dict[str, list[int]]]:
    """Per dimension (seed meta key), :func:`count_specs` over scored queries (``AttackOutcome``s,
    whose ``style`` and ``tool_move`` say what they were asked in), a weakness as the referee says
    (with the solvability ``floor``)."""
    weak = [o.weakness(floor) for o in outcomes]
    return {STYLE_KEY: count_specs([o.style for o in outcomes], weak),
            TOOL_MOVE_KEY: count_specs([o.tool_move for o in outcomes], weak)}


def merge_counts(parts: Iterable[dict]) -> dict[str, list[int]]:
    """The sum of several :func:`count_specs` results (e.g. every step of an attack log); an
    entry that is not a pair of counts is skipped."""
    total: dict[str, list[int]] = {}
    for part in parts:
        for value, pair in (part or {}).items():
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, int) and x >= 0 for x in pair):
                entry = total.setdefault(value, [0, 0])
                entry[0] += pair[0]
                entry[1] += min(pair[1], pair[0])
    return total


def attack_spec_counts(folder: Path) -> dict[str, dict[str, list[int]]] | None:
    """Per dimension (seed meta key), ``{value: [queries, weaknesses]}`` over an attack (the
    ``attack_log.jsonl`` in ``folder``: a duel's round, a black-box attack); None where there was
    no attack."""
    log = folder / files.ATTACK_LOG
    if not log.exists():
        return None
    steps = files.read_jsonl(log)
    return {key: merge_counts(step.get(field) for step in steps) for key, field in DIMENSIONS.items()}


def thompson_draw(space: tuple[str, ...], counts: dict[str, list[int]], rng: random.Random) -> str:
    """A value of ``space`` by Thompson sampling: a weakness rate drawn for each from its Beta
    posterior, the highest taken. The prior is the space's mean weakness rate with the weight of
    :data:`PRIOR_QUERIES` queries, so that a value never tried is drawn around the mean rather
    than anywhere in [0, 1] (with dozens of styles, a flat prior would hand most seeds to untried ones)."""
    asked_all = sum(counts.get(value, (0, 0))[0] for value in space)
    mean = (sum(counts.get(value, (0, 0))[1] for value in space) + 1) / (asked_all + 2)

    def draw(value: str) -> float:
        asked, weak = counts.get(value, (0, 0))
        return rng.betavariate(PRIOR_QUERIES * mean + weak, PRIOR_QUERIES * (1 - mean) + asked - weak)

    return max(space, key=draw)


def assign_specs(seeds: list[Sample], spaces: dict[str, tuple[str, ...]], rng: random.Random,
                 counts: dict[str, dict[str, list[int]]] | None = None, written: bool = False) -> list[Sample]:
    """Each seed with a value of every dimension of ``spaces`` (meta key -> space): drawn evenly,
    or with ``counts`` (meta key -> that dimension's counts) by :func:`thompson_draw`. An empty
    space leaves its key None."""
    out = []
    for seed in seeds:
        spec = {}
        for key, space in spaces.items():
            if not space:
                spec[key] = None
            elif counts is None:
                spec[key] = rng.choice(space)
            else:
                spec[key] = thompson_draw(space, counts.get(key, {}), rng)
        out.append(specified(seed, written, **spec))
    return out


SPEC_CHUNK = 64  # a targeted harvest asks this many queries between updates of its counts


class SpecDraw:
    """The specs of a harvest, drawn a batch of seeds at a time (:meth:`draw`) with ``config``'s
    spaces: evenly, or ``targeted`` by Thompson sampling over the weaknesses found per spec so
    far, the attack's ``counts`` and then each batch's own (:meth:`found`). The same on every
    resume of ``stream``, the outcomes of each batch being the same."""

    def __init__(self, config: Any, stream: str, counts: dict[str, dict[str, list[int]]] | None = None,
                 targeted: bool = True):
        self.spaces = spec_spaces(config.attack_styles, config.surface())
        self.rng = random.Random(f"{stream}:styles:{config.seed}")
        self.targeted = targeted and any(self.spaces.values())
        self.written = written_edits_of(config)
        self.counts = {key: merge_counts([(counts or {}).get(key)]) for key in DIMENSIONS}  # a copy, every dimension

    def draw(self, seeds: list[Sample]) -> list[Sample]:
        return assign_specs(seeds, self.spaces, self.rng, self.counts if self.targeted else None, self.written)

    def found(self, outcomes: list, floor: bool) -> None:
        """Count a batch's outcomes (``AttackOutcome``s) into the next draws."""
        counted = count_outcomes(outcomes, floor)
        self.counts = {key: merge_counts([self.counts[key], counted[key]]) for key in DIMENSIONS}


def specified_seeds(config: Any, seeds: list[Sample], stream: str) -> list[Sample]:
    """``seeds``, each with a spec of ``config``'s spaces (a style of ``attack_styles``; with the
    tool surface, a tool move: any program's attack settings) drawn evenly, as the attack asks;
    the same on every resume of ``stream``."""
    return SpecDraw(config, stream, targeted=False).draw(seeds)
