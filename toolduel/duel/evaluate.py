"""Phase 4, evaluate: the defended FC model on the held-out sets, and this round's attack against it.

Each held-out set is evaluated exactly as ``toolduel eval`` does (:func:`toolduel.evaluate.evaluate`);
the round's harvested queries are scored again against the new FC model, as the harvest scored
them, to show how much of the attack the defence closed. One metrics line per round.
"""

from __future__ import annotations

from typing import Any

from toolduel import run_files as files
from toolduel.data import named_sets
from toolduel.duel.harvest import harvest_scoring, harvest_seeds
from toolduel.duel.players import fc_player
from toolduel.evaluate import evaluate
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.progress import console
from toolduel.referee.outcome import score_queries, step_stats
from toolduel.run_files import RunFolder
from toolduel.world.lexicon import world_lexicon


def phase_evaluate(run: RunFolder, round_index: int, progress: bool) -> dict:
    """Held-out accuracy of the current FC model; for a round, also the attack success of this
    round's queries against the defended FC model, and its answers to the pool's queries."""
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    fc_model = fc_player(run)
    metrics: dict[str, Any] = {"round": round_index, "accuracy": {}, "error_kinds": {}, "error_types": {},
                               "attack_success_rate": None, "validity_rate": None}
    sets = named_sets(config.heldout, config.heldout_limit) | named_sets(config.extra_eval, config.extra_eval_limit)
    for name, samples in sets.items():
        summary = evaluate(fc_model, samples, out_dir / files.EVAL / name.replace(":", "_"),
                           GenerationConfig(max_new_tokens=128), batch_size=config.batch_size,
                           progress=progress, meta={"set": name})
        metrics["accuracy"][name] = summary["accuracy"]
        metrics["error_kinds"][name] = summary["error_kinds"]
        metrics["error_types"][name] = summary["error_types"]
    if round_index > 0:
        metrics.update(attack_after_defence(run, round_index, fc_model))
    close_model(fc_model)
    metrics["pool_size"] = len(files.read_jsonl(run.dir / files.POOL))
    prefix = f"{round_index}:"
    metrics["seconds"] = {phase[len(prefix):]: seconds for phase, seconds in run.state["seconds"].items()
                          if phase.startswith(prefix)} | {"evaluate": run.seconds_since_mark()}
    files.write_json_atomic(out_dir / files.ROUND_METRICS, metrics)
    rebuild_metrics(run)
    return metrics


def attack_after_defence(run: RunFolder, round_index: int, fc_model: Any) -> dict:
    """This round's harvested queries against the defended FC model: its attack success now,
    before the defence, and the new answers to the pool's queries (``after_defence.jsonl``)."""
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    seeds = harvest_seeds(config, round_index)
    harvested = [r for r in files.read_jsonl(out_dir / files.HARVEST)
                 if r.get("seed_id") in {s.id for s in seeds} and isinstance(r.get("query"), str)]
    for position, record in enumerate(harvested):  # a run folder from before harvest records were indexed
        record.setdefault("index", position)
    harvested = [r for r in harvested if isinstance(r["index"], int) and 0 <= r["index"] < len(seeds)
                 and seeds[r["index"]].id == r["seed_id"]]
    k, generation = harvest_scoring(config)  # scored as the harvest scored them
    outcomes = score_queries(fc_model, [seeds[r["index"]] for r in harvested], [r["query"] for r in harvested],
                             k=k, generation=generation, lexicon=world_lexicon())
    by_index = {r["index"]: o for r, o in zip(harvested, outcomes)}
    pool = files.read_jsonl(out_dir / files.POOL)
    first_index = {}  # for pool records from before they carried their harvest position
    for record in harvested:
        first_index.setdefault(record["seed_id"], record["index"])
    answers = {p["id"]: by_index.get(p.get("harvest_index", first_index.get(p.get("seed_id")))) for p in pool}
    after = [{"id": p["id"], "round": round_index, "raw_output": answers[p["id"]].fc_outputs[0],
              "verdict": answers[p["id"]].verdicts[0]} for p in pool
             if answers[p["id"]] is not None and answers[p["id"]].valid and answers[p["id"]].verdicts]
    files.write_jsonl_atomic(out_dir / files.AFTER_DEFENCE, after)
    before = files.read_json_object(out_dir / files.HARVEST_STATS)
    attack_log = files.read_jsonl(out_dir / files.ATTACK_LOG)
    return {"attack_success_rate": step_stats(outcomes)["attack_success_rate"],
            "attack_success_rate_before_defence": before["attack_success_rate"],
            "validity_rate": before["validity_rate"],
            "pool_added": len(pool),
            "attack_steps": [{k: s[k] for k in ("step", "attack_success_rate", "validity_rate")} for s in attack_log]}


def rebuild_metrics(run: RunFolder) -> None:
    """``metrics.jsonl``: every round's metrics line, in round order (rewritten atomically)."""
    files.write_jsonl_atomic(run.dir / files.METRICS, [files.read_json_object(path)
                                                       for path in files.round_files(run.dir, files.ROUND_METRICS)])


def print_round(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"round {metrics['round']}")
    for column in [*metrics["accuracy"], "attack success", "validity", "pool"]:
        table.add_column(column, justify="right")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    table.add_row(*[percent(v) for v in metrics["accuracy"].values()], percent(metrics["attack_success_rate"]),
                  percent(metrics["validity_rate"]), str(metrics.get("pool_size", 0)))
    console.print(table)
