"""Held-out sets of the world, fixed by seed and disjoint from training data.

Every query the generator writes falls in a ``train`` or ``heldout`` split by a hash of its
text (:func:`toolduel.world.generator.split_of`); these sets draw only from ``heldout``, and
training data (warm starts, ``toolduel world sample``) only from ``train``.

``toolduel eval --data world:plain,hard`` reads them by name: ``plain``, one set per
perturbation kind, ``two_call``, ``no_call`` (both plainly phrased) and ``hard`` (every
perturbation kind together, interleaved, each sample's category naming its kind).
"""

from __future__ import annotations

import copy
from functools import cache

from toolduel.schema import Sample
from toolduel.world.generator import generate_samples
from toolduel.world.phrasing import PERTURBATIONS, PLAIN

SET_SIZE = 200
WORLD_SETS: tuple[str, ...] = (PLAIN, *PERTURBATIONS, "two_call", "no_call", "hard")
_SEED_BASE = 1_000_000  # far from the seeds training data uses


def _spec(name: str) -> tuple[str, str]:
    """(kind, phrasing) of a single set."""
    if name in ("two_call", "no_call"):
        return name, PLAIN
    return "one_call", name


@cache
def _single_set(name: str) -> tuple[Sample, ...]:
    kind, phrasing = _spec(name)
    seed = _SEED_BASE + WORLD_SETS.index(name)
    samples, seen = [], set()
    for sample in generate_samples(3 * SET_SIZE, seed=seed, kinds=(kind,), phrasings=(phrasing,),
                                   split="heldout", id_prefix=f"world-{name}"):
        if sample.query.lower() in seen:
            continue
        seen.add(sample.query.lower())
        sample.category = name
        sample.id = f"world-{name}-{len(samples)}"
        samples.append(sample)
        if len(samples) == SET_SIZE:
            break
    return tuple(samples)


def load_world_set(name: str, limit: int | None = None) -> list[Sample]:
    """The held-out set ``name`` (one of :data:`WORLD_SETS`), its first ``limit`` samples.

    ``hard`` interleaves the perturbation kinds, so any prefix of it keeps them balanced."""
    if name not in WORLD_SETS:
        raise ValueError(f"unknown world set {name!r}; valid names: {', '.join(WORLD_SETS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if name == "hard":
        per_kind = [_single_set(kind) for kind in PERTURBATIONS]
        samples = [s for group in zip(*per_kind) for s in group]
    else:
        samples = list(_single_set(name))
    return [copy.deepcopy(s) for s in samples[:limit]]
