"""``toolduel world sample`` (registered by :mod:`toolduel.cli`, which adds ``world build``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from toolduel.world.generator import KINDS, SPLITS, generate_samples
from toolduel.world.phrasing import COMBINATIONS, PERTURBATIONS, PHRASINGS

world_app = typer.Typer(no_args_is_help=True, help="The embedded synthetic tool world and its tiny models.")

# --kind: a phrasing tag or a combination of kinds (one-call samples), a sample kind (plainly
# phrased), "hard" (every perturbation, one call), "composed" (every combination, one call) or
# "all" (every kind and single phrasing).
SAMPLE_KINDS = ("all", *PHRASINGS, "two_call", "no_call", "hard", "composed")


def _kinds_and_phrasings(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if kind == "all":
        return KINDS, PHRASINGS
    if kind == "hard":
        return ("one_call",), PERTURBATIONS
    if kind == "composed":
        return ("one_call",), COMBINATIONS
    if kind in ("two_call", "no_call"):
        return (kind,), ("plain",)
    return ("one_call",), (kind,)


@world_app.command("sample")
def sample_command(
    n: int = typer.Option(100, "--n", min=1, help="How many samples to write."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same samples."),
    kind: str = typer.Option("all", "--kind", help=f"One of: {', '.join(SAMPLE_KINDS)}, "
                              "or kinds joined by '+' (e.g. reordered+terse)."),
    split: str = typer.Option("train", "--split", help="train, or heldout (the split the held-out sets use)."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write, one Sample per line."),
) -> None:
    """Write seeded world samples as JSONL (toolduel's Sample schema)."""
    if kind not in (*SAMPLE_KINDS, *COMBINATIONS):
        raise typer.BadParameter(f"unknown kind {kind!r}; use one of {', '.join(SAMPLE_KINDS)}", param_hint="--kind")
    if split not in SPLITS:
        raise typer.BadParameter(f"unknown split {split!r}; use one of {', '.join(SPLITS)}", param_hint="--split")
    kinds, phrasings = _kinds_and_phrasings(kind)
    samples = generate_samples(n, seed=seed, kinds=kinds, phrasings=phrasings, split=split)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            for sample in samples:
                handle.write(json.dumps(sample.to_dict(), ensure_ascii=False) + "\n")
    except OSError as err:  # a full disk, /dev/full, a folder that cannot be made
        typer.echo(f"error: --out {out} cannot be written ({err.strerror or err})", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {len(samples)} samples to {out}")
