"""Data specs -> samples.

A spec names where samples come from:

- ``bfcl:simple_python,multiple`` or ``bfcl:all`` (every python AST category of BFCL);
- ``world:plain,hard`` (held-out sets of the embedded tool world);
- a path to a JSONL file (OpenAI chat, xLAM or toolduel records).

``limit`` caps each named category or set (a JSONL file: the whole file).
"""

from __future__ import annotations

from pathlib import Path

from toolduel.data.bfcl import BFCL_AST_CATEGORIES, DataError, load_bfcl
from toolduel.data.jsonl import LoadReport, load_jsonl

__all__ = ["BFCL_AST_CATEGORIES", "DataError", "LoadReport", "load_samples"]


def _load_world(names: str, limit: int | None) -> list:
    from toolduel.world.heldout import load_world_set  # the world is only imported when asked for

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
    if path.is_file():
        return load_jsonl(path, limit=limit, skip_bad=skip_bad)
    raise DataError(f"data spec {spec!r} is neither bfcl:<categories>, world:<sets> nor an existing JSONL file")
