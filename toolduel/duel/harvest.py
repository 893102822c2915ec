"""Phase 2, harvest: the trained query model rewrites fresh seeds; the valid queries that fooled
the FC model, and could be answered (the solvability floor), join the adversarial pool, with
their provenance (:func:`toolduel.referee.outcome.pool_record`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from toolduel import run_files as files
from toolduel.data import seed_samples
from toolduel.duel.config import GameConfig
from toolduel.duel.players import fc_player, load_chat_model
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.progress import console
from toolduel.prompts import sample_queries
from toolduel.referee.judge import build_judge
from toolduel.referee.outcome import (
    AttackOutcome,
    adversarial_sample,
    pool_record,
    score_queries,
    step_stats,
)
from toolduel.run_files import RunFolder
from toolduel.schema import Sample
from toolduel.specs import SPEC_CHUNK, SpecDraw, attack_spec_counts
from toolduel.world.lexicon import world_lexicon
from toolduel.world.tool_edits import UNCHANGED


def harvest_scoring(config: GameConfig) -> tuple[int, GenerationConfig]:
    """How the FC model answers harvested queries (k and generation): once and greedily, as in
    evaluation, with ``harvest_greedy``; otherwise as in the attack."""
    k = 1 if config.harvest_greedy else config.fc_samples
    return k, config.fc_generation(k, seed=config.seed)


def harvest_seeds(config: GameConfig, round_index: int) -> list[Sample]:
    return seed_samples(config.seeds, config.harvest_seeds, f"harvest-{round_index}", config.seed)


def attack_records(config: GameConfig, round_index: int, seeds: list[Sample], query_model: Any, fc_model: Any,
                   judge: Any = None, counts: dict[str, dict[str, list[int]]] | None = None,
                   stream: str = "harvest") -> tuple[list[AttackOutcome], list[dict], list[Sample]]:
    """Sample a query per seed, gate validity (rules, and the judge: by default the one the config
    names), let the FC model answer: the outcomes, one record per query, valid or not, as
    ``harvest.jsonl`` holds them, and the seeds as asked (each with its spec).

    Each seed gets a spec (:mod:`toolduel.specs`): with ``harvest_styles: uniform`` drawn evenly;
    with ``targeted``, :data:`SPEC_CHUNK` seeds at a time by Thompson sampling over the weaknesses
    found per style and per tool move so far, the attack's (``counts``) and then the harvest's own."""
    specs = SpecDraw(config, f"{stream}-{round_index}", counts, targeted=config.harvest_styles == "targeted")
    k, generation = harvest_scoring(config)
    judge = judge if judge is not None else build_judge(config)
    asked: list[Sample] = []
    outcomes: list[AttackOutcome] = []
    size = SPEC_CHUNK if specs.targeted else max(1, len(seeds))
    for start in range(0, len(seeds), size):
        chunk = specs.draw(seeds[start:start + size])
        queries = sample_queries(query_model, chunk, config.query_generation(config.seed + round_index + start))
        scored = score_queries(fc_model, chunk, queries, k=k, generation=generation, lexicon=world_lexicon(),
                               judge=judge)
        specs.found(scored, config.solvability_floor)
        asked += chunk
        outcomes += scored
    records = [{"round": round_index, "index": index, "seed_id": seed.id, "query": o.query, "style": o.style,
                "tool_move": o.tool_move, "valid": o.valid,
                "reasons": o.reasons if o.error is None else [f"not_scored: {o.error}"],
                "fc_success": o.fc_success, "solvable": o.solvable,
                # what a valid query asks for: the report compares the traits of queries that
                # fooled the FC model with those that did not
                "sample": adversarial_sample(seed, o.query).to_dict() if o.valid else None}
               for index, (seed, o) in enumerate(zip(asked, outcomes))]
    return outcomes, records, asked


def harvest(config: GameConfig, round_index: int, seeds: list[Sample], query_model: Any, fc_model: Any,
            query_checkpoint: str, fc_checkpoint: str, out_dir: Path, judge: Any = None,
            counts: dict[str, dict[str, list[int]]] | None = None) -> tuple[list[dict], dict]:
    """The query model's queries for ``seeds`` (:func:`attack_records`, every one written to
    ``harvest.jsonl``, the specs targeted from the attack's ``counts``); returns the pool records
    of this round and the harvest stats."""
    outcomes, records, asked = attack_records(config, round_index, seeds, query_model, fc_model, judge, counts)
    files.write_jsonl_atomic(out_dir / files.HARVEST, records)
    # Seeds may repeat (drawn with replacement): the harvest position makes each pool id unique.
    pool = [pool_record(f"r{round_index}-{index}-{seed.id}", round_index, seed, outcome, query_checkpoint,
                        fc_checkpoint) | {"harvest_index": index}
            for index, (seed, outcome) in enumerate(zip(asked, outcomes))
            if outcome.valid and (config.harvest_keep == "valid" or outcome.weakness(config.solvability_floor))]
    # untargeted augmentation (keep every valid query) draws its budget as it comes, blind to the verdicts
    return (select_pool(pool, config.pool_budget, by_band=config.harvest_keep == "successful"),
            step_stats(outcomes, config.solvability_floor))


def fingerprint(record: dict) -> str:
    """What makes two pool records the same example: the query (and the tool edits it wrote) with
    case, digits and punctuation folded (``Convert 12 km`` and ``convert 13 km.`` alike), the same
    gold calls, and the same tool list (the same move: a seed's edit by a move is always the same)."""
    said = "\n".join([record["query"], *(record.get("tool_edits") or [])])
    words = re.findall(r"[^\W\d_]+|\d+", said.lower())
    text = " ".join("0" if word.isdigit() else word for word in words)
    move = record.get("tool_move") if record.get("tool_move") != UNCHANGED else None
    return "\n".join([text, json.dumps(record["sample"]["gold"], sort_keys=True), str(move or "")])


def select_pool(pool: list[dict], budget: int | None, by_band: bool = True) -> list[dict]:
    """The pool's records without repeats (:func:`fingerprint`; the first one kept), and at most
    ``budget`` of them drawn evenly over the FC model's success bands: one record of each success
    rate (``fc_success``: 0, 1/k, ..., in that order) in turn, each band in harvest order, so that a
    budget smaller than the harvest spans hard and borderline weaknesses instead of taking the
    first ones found. ``by_band`` False: the first ``budget`` in harvest order (a draw blind to
    the FC model's answers, as untargeted augmentation must be)."""
    seen: set[str] = set()
    unique = [r for r in pool if (key := fingerprint(r)) not in seen and not seen.add(key)]
    if budget is None or budget >= len(unique):
        return unique
    if not by_band:
        return unique[:budget]
    bands: dict[float, list[dict]] = {}
    for record in unique:
        bands.setdefault(record["fc_success"], []).append(record)
    queues = [bands[rate] for rate in sorted(bands)]
    chosen = [queue[turn] for turn in range(max(map(len, queues))) for queue in queues if turn < len(queue)]
    return sorted(chosen[:budget], key=lambda r: r["harvest_index"])


def phase_harvest(run: RunFolder, round_index: int, progress: bool) -> None:
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    seeds = harvest_seeds(config, round_index)
    query_path, fc_path = run.path("query_path"), run.path("fc_path")
    query_model, fc_model = load_chat_model(query_path, config, progress, "query model"), fc_player(run, progress)
    try:
        pool, stats = harvest(config, round_index, seeds, query_model, fc_model, str(query_path.relative_to(run.dir)),
                              str(fc_path.relative_to(run.dir)), out_dir, counts=attack_spec_counts(out_dir))
    finally:  # a vLLM engine gives its GPU memory back before training starts again
        close_model(query_model)
        close_model(fc_model)
    files.write_jsonl_atomic(out_dir / files.POOL, pool)
    files.write_json_atomic(out_dir / files.HARVEST_STATS, stats)
    rebuild_pool(run)
    console.print(f"harvest: {stats['queries']} queries, validity {stats['validity_rate']:.2f}, attack success "
                  f"{stats['attack_success_rate']:.2f}, {len(pool)} added to the pool")
    run.mark(f"{round_index}:harvest")


def rebuild_pool(run: RunFolder) -> None:
    """The top-level pool: every round's pool records, in round order (rewritten atomically; a
    damaged round file stops the run with its name, the pool left as it was)."""
    files.rebuild_jsonl(run.dir / files.POOL, files.round_files(run.dir, files.POOL))
