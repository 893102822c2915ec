"""Held-out sets of the world, fixed by seed and disjoint from training data.

Every query the generator writes falls in a ``train`` or ``heldout`` split by a hash of its
text (:func:`toolduel.world.generator.split_of`); these sets draw only from ``heldout``, and
training data (warm starts, ``toolduel world sample``) only from ``train``.

``toolduel eval --data world:plain,hard`` reads them by name: ``plain``, one set per
perturbation kind, ``two_call``, ``no_call`` (both plainly phrased), ``hard`` (every
perturbation kind together, interleaved, each sample's category naming its kind) and
``composed`` (one-call requests in every combination of two or three kinds, interleaved,
:data:`COMPOSED_PER_COMBINATION` of each) and ``tools`` (plain one-call requests whose tool
list is edited by one move of :mod:`toolduel.world.tool_edits`, interleaved,
:data:`TOOLS_PER_MOVE` of each).
"""

from __future__ import annotations

import copy
import random
from functools import cache

from toolduel.schema import Sample
from toolduel.world.generator import generate_samples
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS, PLAIN
from toolduel.world.tool_edits import TOOL_MOVES, edit_tools

SET_SIZE = 200
WORLD_SETS: tuple[str, ...] = (PLAIN, *PERTURBATIONS, "two_call", "no_call", "hard", "composed", "tools")
COMPOSED_PER_COMBINATION = 8
TOOLS_PER_MOVE = 40
_SEED_BASE = 1_000_000  # far from the seeds training data uses


def _spec(name: str) -> tuple[str, str]:
    """(kind, phrasing) of a single set."""
    if name in ("two_call", "no_call"):
        return name, PLAIN
    return "one_call", name


@cache
def _single_set(name: str, size: int = SET_SIZE) -> tuple[Sample, ...]:
    """``size`` distinct samples of a set of one kind and phrasing (a name of :data:`WORLD_SETS`,
    or a combination of kinds, drawn one-call from seeds of their own)."""
    kind, phrasing = _spec(name)
    seed = _SEED_BASE + (WORLD_SETS.index(name) if name in WORLD_SETS else 100 + COMBINATIONS.index(name))
    samples, seen = [], set()
    for sample in generate_samples(3 * size, seed=seed, kinds=(kind,), phrasings=(phrasing,),
                                   split="heldout", id_prefix=f"world-{name}"):
        if sample.query.lower() in seen:
            continue
        seen.add(sample.query.lower())
        sample.category = name
        sample.id = f"world-{name}-{len(samples)}"
        samples.append(sample)
        if len(samples) == size:
            break
    return tuple(samples)


@cache
def _tool_move_set(move: str) -> tuple[Sample, ...]:
    """:data:`TOOLS_PER_MOVE` plain one-call held-out requests, each with its tool list edited by ``move``."""
    index = TOOL_MOVES.index(move)
    rng = random.Random(f"world-tools:{move}")
    samples: list[Sample] = []
    seen: set[str] = set()
    for sample in generate_samples(3 * TOOLS_PER_MOVE, seed=_SEED_BASE + 300 + index, kinds=("one_call",),
                                   phrasings=(PLAIN,), split="heldout", id_prefix=f"world-tools-{move}"):
        edited = edit_tools(sample, move, rng) if sample.query.lower() not in seen else None
        if edited is None:
            continue
        seen.add(sample.query.lower())
        edited.id, edited.category = f"world-tools-{move}-{len(samples)}", move
        samples.append(edited)
        if len(samples) == TOOLS_PER_MOVE:
            break
    return tuple(samples)


def load_world_set(name: str, limit: int | None = None) -> list[Sample]:
    """The held-out set ``name`` (one of :data:`WORLD_SETS`), its first ``limit`` samples.

    ``hard``, ``composed`` and ``tools`` interleave their kinds, so any prefix keeps them balanced."""
    if name not in WORLD_SETS:
        raise ValueError(f"unknown world set {name!r}; valid names: {', '.join(WORLD_SETS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if name == "hard":
        per_kind = [_single_set(kind) for kind in PERTURBATIONS]
        samples = [s for group in zip(*per_kind) for s in group]
    elif name == "composed":
        per_combination = [_single_set(c, COMPOSED_PER_COMBINATION) for c in COMBINATIONS]
        samples = [s for group in zip(*per_combination) for s in group]
    elif name == "tools":
        samples = [s for group in zip(*(_tool_move_set(move) for move in TOOL_MOVES)) for s in group]
    else:
        samples = list(_single_set(name))
    return [copy.deepcopy(s) for s in samples[:limit]]
