"""Build the world's tiny models (tokenizer, FC model, query model) and cache them.

On a cache miss :func:`ensure_world_models` builds into a temporary folder next to the
cache entry and renames it into place, so a crashed or concurrent build never leaves a
half-written entry. The entry is keyed by the world version, the build recipe version and
a hash of the budget, so changing either rebuilds.
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

from toolduel.world.catalog import WORLD_VERSION

BUILD_VERSION = "2"  # bump when the recipe below changes in a way the budget does not show


@dataclass(frozen=True)
class BuildBudget:
    """Sizes and training settings for one build."""

    name: str
    fc_examples: int
    query_examples: int
    tokenizer_texts: int = 6000
    vocab_size: int = 1536
    hidden_size: int = 128
    num_layers: int = 2  # copies as reliably as 4 layers at half the cost of a step (BENCHMARKS, eighth pass)
    num_heads: int = 8  # head size 16: more heads to form copying circuits, same parameters
    num_kv_heads: int = 4
    intermediate_size: int = 384
    fc_turns: int = 3  # answers per FC training conversation (they share one tool list)
    fc_batch_size: int = 6  # conversations per step: many small steps learn copying sooner
    query_batch_size: int = 8  # steps matter more than examples per step here too
    fc_learning_rate: float = 3e-3
    query_learning_rate: float = 3e-3
    lr_decay: float = 0.2  # flat learning rate, then a cosine fall over this last fraction of steps
    # FC warm start: start that fall as soon as this share of probe rows is answered exactly
    # (the copying circuit has formed), keeping the rate flat past the planned point while it
    # has not (docs/BENCHMARKS.md, sixth pass); None: the fall starts as planned.
    fc_decay_when_exact: float | None = 0.6
    probe_rows: int = 64
    adam_beta2: float = 0.95
    # The query model starts from the trained FC model, whose copying circuits it needs (a seed
    # query is mostly copied); from a fresh model it does not learn to copy in its budget.
    query_from_fc: bool = True
    seed: int = 0


BUDGETS: dict[str, BuildBudget] = {
    # About 7 minutes on 2 CPU cores. 60k FC answers, because at 45k where copying switches on
    # moves with floating-point order: plain 0.41-0.83 across runs of one seed, against 0.88 and
    # 0.96 at 60k (docs/BENCHMARKS.md, fourth pass); a switch later still (0.405 at 60k for seed
    # 1 in the sixth pass) gets more flat steps from the decay probe.
    "default": BuildBudget("default", fc_examples=60_000, query_examples=16_000),
    # The earlier 4-layer default's FC model and four times the query examples: samples 0.87
    # valid (0.57 then in the default) and 7 of 8 kinds; about 9 minutes more than that default
    # at its rate of 11.5 ms per query example on 2 cores (docs/BENCHMARKS.md, fifth pass).
    "large": BuildBudget("large", fc_examples=60_000, query_examples=64_000, num_layers=4),
    # seconds, for tests: the checkpoints load and generate, they do not learn much
    "test": BuildBudget("test", fc_examples=48, query_examples=32, tokenizer_texts=200, vocab_size=400,
                        hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                        fc_batch_size=8, query_batch_size=16, fc_decay_when_exact=None),
}


@dataclass
class WorldModels:
    """Paths of a built world; each model folder is a full HF checkpoint with its tokenizer."""

    root: Path
    tokenizer_path: Path
    fc_path: Path
    query_path: Path
    budget: str
    info: dict


def get_budget(budget: str | BuildBudget) -> BuildBudget:
    if isinstance(budget, BuildBudget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]


def cache_root() -> Path:
    """``$TOOLDUEL_CACHE``, else ``$XDG_CACHE_HOME/toolduel``, else ``~/.cache/toolduel``."""
    if os.environ.get("TOOLDUEL_CACHE"):
        return Path(os.environ["TOOLDUEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "toolduel"


def cache_key(budget: BuildBudget) -> str:
    settings = json.dumps(dataclasses.asdict(budget), sort_keys=True)
    digest = hashlib.sha256(f"{WORLD_VERSION}:{BUILD_VERSION}:{settings}".encode()).hexdigest()[:12]
    return f"world-v{WORLD_VERSION}-{budget.name}-{digest}"


def _models_at(root: Path, budget: BuildBudget) -> WorldModels:
    info = json.loads((root / "build.json").read_text(encoding="utf-8"))
    return WorldModels(root, root / "tokenizer", root / "fc", root / "query", budget.name, info)


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
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def tokenizer_corpus(fc_rows: list[dict], query_rows: list[dict], n: int) -> list[str]:
    """Full chat texts of training rows, rendered by the world's own chat template, so the
    BPE merges fit what the models will read and write."""
    from toolduel.world.tiny_models import train_tokenizer

    bootstrap = train_tokenizer(["a"], vocab_size=300)  # only its chat template is used
    rows = fc_rows[: n * 2 // 3] + query_rows[: n - n * 2 // 3]
    return [bootstrap.apply_chat_template(r["messages"] if "messages" in r else r["prompt"] + r["completion"],
                                          tools=json.loads(r["tools"]) if "tools" in r else None, tokenize=False)
            for r in rows]


_SEED_OFFSETS = {"fc": 0, "query": 1}  # each warm start draws its own initial weights and order


def rows_and_tokenizer(budget: BuildBudget) -> tuple[list[dict], list[dict], Any]:
    """The FC and query training rows of ``budget`` and the tokenizer trained on them."""
    from toolduel.world.tiny_models import train_tokenizer
    from toolduel.world.training_data import fc_examples, query_examples

    fc_rows = fc_examples(budget.fc_examples, seed=budget.seed, turns=budget.fc_turns)
    query_rows = query_examples(budget.query_examples, seed=budget.seed)
    tokenizer = train_tokenizer(tokenizer_corpus(fc_rows, query_rows, budget.tokenizer_texts),
                                vocab_size=budget.vocab_size)
    return fc_rows, query_rows, tokenizer


def fresh_model(budget: BuildBudget, tokenizer: Any, role: str) -> Any:
    """A newly initialised Qwen2 of ``budget``'s size for ``role`` ("fc" or "query")."""
    from toolduel.world.tiny_models import build_qwen2

    return build_qwen2(tokenizer, hidden_size=budget.hidden_size, num_layers=budget.num_layers,
                       num_heads=budget.num_heads, num_kv_heads=budget.num_kv_heads,
                       intermediate_size=budget.intermediate_size, seed=budget.seed + _SEED_OFFSETS[role])


def warm_start_settings(budget: BuildBudget, role: str, examples: int) -> Any:
    """The SFT settings of ``role``'s warm start ("fc" or "query") on ``examples`` rows."""
    from toolduel.training.sft import SFTSettings

    learning_rate, batch_size = {"fc": (budget.fc_learning_rate, budget.fc_batch_size),
                                 "query": (budget.query_learning_rate, budget.query_batch_size)}[role]
    return SFTSettings(examples=examples, batch_size=batch_size, learning_rate=learning_rate,
                       decay=budget.lr_decay, adam_beta2=budget.adam_beta2, seed=budget.seed + _SEED_OFFSETS[role],
                       decay_when_exact=budget.fc_decay_when_exact if role == "fc" else None)


def probe_rows(budget: BuildBudget, role: str) -> list[dict] | None:
    """The rows whose exact answers decide when ``role``'s decay starts, or None (as planned)."""
    from toolduel.world.training_data import fc_probe_rows

    if role != "fc" or budget.fc_decay_when_exact is None:
        return None
    return fc_probe_rows(budget.probe_rows, seed=budget.seed + 1000)


def build_world_models(budget: BuildBudget, out_dir: Path, progress: bool = True) -> dict:
    """Build everything into ``out_dir``; returns (and writes to build.json) the timings."""
    import torch
    from transformers import Qwen2ForCausalLM

    from toolduel.progress import progress_bar
    from toolduel.training.sft import sft_train
    from toolduel.world.tiny_models import QUERY_CHAT_TEMPLATE

    timings: dict[str, float] = {}
    start = time.perf_counter()
    with _quiet_libraries():
        # 1. data and tokenizer
        fc_rows, query_rows, tokenizer = rows_and_tokenizer(budget)
        tokenizer.save_pretrained(out_dir / "tokenizer")
        timings["data_and_tokenizer_s"] = time.perf_counter() - start
        # 2. the two warm starts: the FC model from a fresh one, the query model from the FC model
        for role, rows in (("fc", fc_rows), ("query", query_rows)):
            phase_start = time.perf_counter()
            if role == "query":  # after the FC model saved its own template
                tokenizer.chat_template = QUERY_CHAT_TEMPLATE
            if role == "query" and budget.query_from_fc:
                model = Qwen2ForCausalLM.from_pretrained(out_dir / "fc")
            else:
                model = fresh_model(budget, tokenizer, role)
            settings = warm_start_settings(budget, role, len(rows))
            total = math.ceil(len(rows) / settings.batch_size)
            steps = []
            with progress_bar(f"training the {role} model", total, enabled=progress) as advance, \
                    tempfile.TemporaryDirectory() as scratch:
                sft_train(model, tokenizer, rows, settings, scratch, on_step=lambda step, _total: (
                    steps.append(step), advance(1)), probe_rows=probe_rows(budget, role))
                advance(completed=len(steps), total=len(steps))  # the decay may have started, and ended, early
            timings[f"{role}_steps"] = len(steps)
            model.save_pretrained(out_dir / role)
            tokenizer.save_pretrained(out_dir / role)
            timings[f"{role}_train_s"] = time.perf_counter() - phase_start
    timings["total_s"] = time.perf_counter() - start
    info = {"budget": dataclasses.asdict(budget), "world_version": WORLD_VERSION, "build_version": BUILD_VERSION,
            "timings": {k: round(v, 1) for k, v in timings.items()}, "torch_threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters())}
    (out_dir / "build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info
