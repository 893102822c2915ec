"""Data specs -> samples.

A spec names where samples come from:

- ``bfcl:simple_python,multiple`` or ``bfcl:all`` (every python AST category of BFCL);
- ``world:plain,hard`` (held-out sets of the embedded tool world);
- ``world:train`` (fresh plain requests of the world's training split, as seeds and replay
  of the duel: :func:`seed_samples`, :func:`replay_samples`);
- a path to a JSONL file (OpenAI chat, xLAM or toolduel records).

``limit`` caps each named category or set (a JSONL file: the whole file).
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from toolduel.config import ConfigError, regular_file
from toolduel.data.bfcl import BFCL_AST_CATEGORIES, DataError, load_bfcl
from toolduel.data.jsonl import LoadReport, load_jsonl
from toolduel.run_files import seeded_draw
from toolduel.schema import Sample

__all__ = ["BFCL_AST_CATEGORIES", "WORLD_TRAIN", "DataError", "LoadReport", "check_spec", "load_samples", "named_sets",
           "overlaps", "replay_samples", "seed_pool", "seed_samples"]

WORLD_TRAIN = "world:train"


def _load_world(names: str, limit: int | None) -> list:
    from toolduel.world.heldout import (
        load_world_set,  # the world is only imported when asked for
    )

    samples = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        try:
            samples.extend(load_world_set(name, limit=limit))
        except ValueError as err:
            raise DataError(str(err)) from None
    if not samples:
        raise DataError(f"world:{names} names no held-out set")
    return samples


def load_samples(spec: str, limit: int | None = None, skip_bad: bool = False,
                 bfcl_root: str | Path | None = None) -> LoadReport:
    """Read the samples a spec names (see the module docstring)."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    prefix, _, rest = spec.partition(":")
    if prefix == "bfcl" and rest:
        return LoadReport(samples=load_bfcl(rest, root=bfcl_root, limit=limit))
    if prefix == "world" and rest:
        return LoadReport(samples=_load_world(rest, limit))
    path = Path(spec)
    if os.path.lexists(path):  # a JSONL file, which load_jsonl checks is a regular one
        return load_jsonl(path, limit=limit, skip_bad=skip_bad)
    raise DataError(f"data spec {spec!r} is neither bfcl:<categories>, world:<sets> nor an existing JSONL file")


def check_spec(spec: str, setting: str, allow_world_train: bool = False) -> None:
    """A :class:`DataError` naming ``setting`` when ``spec`` names no data (checked when settings
    are loaded, before a run folder is written, so a typo never reaches a resume command)."""
    prefix, _, names = str(spec).partition(":")
    if spec == WORLD_TRAIN and allow_world_train:
        return
    try:
        if prefix == "bfcl" and names:
            from toolduel.data.bfcl import resolve_categories

            resolve_categories(names)
            return
        if prefix == "world" and names:
            from toolduel.world.heldout import WORLD_SETS

            unknown = [n.strip() for n in names.split(",") if n.strip() and n.strip() not in WORLD_SETS]
            if unknown or not names.strip(", "):
                raise DataError(f"unknown world set(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(WORLD_SETS)}")
            return
    except DataError as err:
        raise DataError(f"{setting}: {err}") from None
    if os.path.lexists(spec):
        try:
            regular_file(spec, f"{setting} = {spec!r}:")
        except ConfigError as err:
            raise DataError(str(err)) from None
        return
    if not Path(spec).is_file():
        allowed = "world:train, " if allow_world_train else ""
        raise DataError(f"{setting} = {spec!r} is neither {allowed}bfcl:<categories>, world:<sets> nor an existing "
                        "JSONL file")


def named_sets(spec: str | None, limit: int | None = None) -> dict[str, list[Sample]]:
    """Held-out sets by name: each world set or BFCL category on its own (``bfcl:<category>``),
    a JSONL file as one set named after the file."""
    if not spec:
        return {}
    prefix, _, names = spec.partition(":")
    if prefix in ("world", "bfcl") and names:
        return {name if prefix == "world" else f"bfcl:{name}": load_samples(f"{prefix}:{name}", limit=limit).samples
                for name in [n.strip() for n in names.split(",") if n.strip()]}
    return {Path(spec).stem: load_samples(spec, limit=limit).samples}


def seed_pool(spec: str, limit: int | None = None, skip_bad: bool = False,
              bfcl_root: str | Path | None = None) -> tuple[list[Sample], list[str]]:
    """The samples of ``spec`` that have gold calls (a query model rewrites a request for known
    calls), and the malformed records skipped."""
    report = load_samples(spec, limit=limit, skip_bad=skip_bad, bfcl_root=bfcl_root)
    pool = [sample for sample in report.samples if sample.gold]
    if not pool:
        raise DataError(f"{spec} holds no sample with gold calls for the query model to rewrite")
    return pool, list(report.skipped)


def seed_samples(spec: str, n: int, stream: str, seed: int) -> list[Sample]:
    """``n`` seeds for one purpose (``stream``), the same on every resume: fresh plain requests
    for ``world:train``, else drawn with replacement from the spec's samples with gold calls."""
    if spec == WORLD_TRAIN:
        from toolduel.world.training_data import seed_requests

        return seed_requests(n, seed=random.Random(f"{seed}:{stream}").randrange(10**9), id_prefix=f"seed-{stream}")
    return seeded_draw(seed_pool(spec)[0], n, stream, seed)


def replay_samples(spec: str, n: int, stream: str, seed: int) -> list[Sample]:
    """``n`` samples of every kind (no-call included) replayed in the defence, the same on every
    resume: fresh plain requests for ``world:train``, else drawn from the spec's samples."""
    if n == 0:
        return []
    if spec == WORLD_TRAIN:
        from toolduel.world.training_data import replay_requests

        return replay_requests(n, seed=random.Random(f"{seed}:{stream}").randrange(10**9),
                               id_prefix=f"replay-{stream}")
    return seeded_draw(load_samples(spec).samples, n, stream, seed)


def _request_key(sample: Sample) -> str:
    query = re.sub(r"\s+", " ", sample.query.lower()).strip()
    return json.dumps([query, [gold.to_bfcl() for gold in sample.gold]], sort_keys=True, default=str)


def overlaps(seeds: str, evaluated: dict[str, list[Sample]]) -> list[str]:
    """Where the samples of the ``seeds`` spec (the duel's seeds and replay) are also in an
    ``evaluated`` set (by name): the same sample id, or the same query and gold calls. One entry
    per set, ``"<set>: <n> samples (<first ids>)"``; empty when they share nothing.
    ``world:train`` is drawn from the world's training split, so it shares no query with the
    world's held-out sets, and it holds no sample of another source."""
    if seeds == WORLD_TRAIN:
        return []
    pool = load_samples(seeds).samples
    ids, requests = {s.id for s in pool}, {_request_key(s) for s in pool}
    found = []
    for name, samples in evaluated.items():
        shared = [s.id for s in samples if s.id in ids or _request_key(s) in requests]
        if shared:
            more = ", ..." if len(shared) > 3 else ""
            found.append(f"{name}: {len(shared)} samples ({', '.join(shared[:3])}{more})")
    return found
