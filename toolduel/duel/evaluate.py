"""Phase 5, evaluate: the defended FC model on the held-out sets, and this round's attack against it.

Each held-out set is evaluated exactly as ``toolduel eval`` does (:func:`toolduel.evaluate.evaluate`).
The round's attack is measured again on *fresh* queries: its query model rewrites seeds it was
never trained on and the defence never saw, against the defended FC model, gated, judged and
scored as the harvest scored its queries. The queries the defence trained on (the round's pool)
are answered again only as examples for the report. One metrics line per round.
"""

from __future__ import annotations

from typing import Any

from toolduel import run_files as files
from toolduel.data import named_sets, seed_samples
from toolduel.duel.config import GameConfig
from toolduel.duel.harvest import attack_records
from toolduel.specs import attack_spec_counts
from toolduel.duel.players import fc_player, load_chat_model
from toolduel.evaluate import evaluate
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.progress import console
from toolduel.referee.outcome import AttackOutcome, score_answers, step_stats
from toolduel.run_files import RunFolder
from toolduel.schema import Sample
from toolduel.training.grpo import step_summary


def phase_evaluate(run: RunFolder, round_index: int, progress: bool) -> dict:
    """Held-out accuracy of the current FC model; for a round, also the attack success of this
    round's query model against the defended FC model on fresh queries, and the defended FC
    model's answers to the pool's queries."""
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
        metrics.update(attack_after_defence(run, round_index, fc_model, progress))
        if (out_dir / files.GUARD).exists():  # the defence guard's verdict: which FC model this round kept
            metrics["guard"] = files.read_json_object(out_dir / files.GUARD)
    close_model(fc_model)
    metrics["pool_size"] = len(files.read_jsonl(run.dir / files.POOL))
    prefix = f"{round_index}:"
    metrics["seconds"] = {phase[len(prefix):]: seconds for phase, seconds in run.state["seconds"].items()
                          if phase.startswith(prefix)} | {"evaluate": run.seconds_since_mark()}
    files.write_json_atomic(out_dir / files.ROUND_METRICS, metrics)
    rebuild_metrics(run)
    return metrics


def fresh_seeds(config: GameConfig, round_index: int) -> list[Sample]:
    """As many seeds as the harvest's, drawn on their own stream: none of the round's training data."""
    return seed_samples(config.seeds, config.harvest_seeds, f"fresh-attack-{round_index}", config.seed)


def attack_after_defence(run: RunFolder, round_index: int, fc_model: Any, progress: bool = False) -> dict:
    """The round's query model against the defended FC model on fresh queries (``fresh_attack.jsonl``;
    with ``after_defence_attack`` only), beside the harvest's measurement against the FC model
    before the defence; and the defended model's answers to the round's pool queries
    (``after_defence.jsonl``)."""
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    after = None
    if config.after_defence_attack:
        query_model = load_chat_model(run.path("query_path"), config, progress, "query model")
        try:
            outcomes, records, _ = attack_records(config, round_index, fresh_seeds(config, round_index), query_model,
                                                  fc_model, counts=attack_spec_counts(out_dir), stream="fresh-attack")
        finally:
            close_model(query_model)
        files.write_jsonl_atomic(out_dir / files.FRESH_ATTACK, records)
        after = step_stats(outcomes, config.solvability_floor)
    pool = files.read_jsonl(out_dir / files.POOL)
    files.write_jsonl_atomic(out_dir / files.AFTER_DEFENCE, answers_to_pool(pool, round_index, fc_model))
    before = files.read_json_object(out_dir / files.HARVEST_STATS)
    attack_log = files.read_jsonl(out_dir / files.ATTACK_LOG)
    return {"attack_success_rate": None if after is None else after["attack_success_rate"],
            "attack_success_rate_before_defence": before["attack_success_rate"],
            "validity_rate": before["validity_rate"],
            "attack": {"before_defence": before, "after_defence": after},
            "pool_added": len(pool),
            "attack_steps": step_summary(attack_log)}


def answers_to_pool(pool: list[dict], round_index: int, fc_model: Any) -> list[dict]:
    """The FC model's greedy answer to each pool record's query, checked (after-defence records)."""
    samples = {}
    for record in pool:
        try:
            samples[record["id"]] = Sample.from_dict(record["sample"])
        except (KeyError, TypeError, ValueError):  # a record without its sample has nothing to answer
            continue
    if not samples:
        return []
    generations = fc_model.generate([s.messages for s in samples.values()], [s.tools for s in samples.values()],
                                    GenerationConfig(max_new_tokens=128))
    after = []
    for (record_id, sample), generation in zip(samples.items(), generations):
        answered = score_answers(AttackOutcome(sample.query, True, []), sample, [generation])
        if answered.verdicts:
            after.append({"id": record_id, "round": round_index, "raw_output": answered.fc_outputs[0],
                          "verdict": answered.verdicts[0]})
    return after


def rebuild_metrics(run: RunFolder) -> None:
    """``metrics.jsonl``: every round's metrics line, in round order (rewritten atomically)."""
    files.write_jsonl_atomic(run.dir / files.METRICS, [files.read_json_object(path)
                                                       for path in files.round_files(run.dir, files.ROUND_METRICS)])


def print_round(metrics: dict) -> None:
    from rich.table import Table

    caption = ("attack success: the round's query model against the FC model before its defence (the harvest's "
               "queries) / after it (fresh queries)") if metrics["round"] > 0 else None
    table = Table(title=f"round {metrics['round']}", caption=caption)
    for column in [*metrics["accuracy"], "attack success", "validity", "pool"]:
        table.add_column(column, justify="right")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    attack = f"{percent(metrics.get('attack_success_rate_before_defence'))} / {percent(metrics['attack_success_rate'])}"
    table.add_row(*[percent(v) for v in metrics["accuracy"].values()], attack, percent(metrics["validity_rate"]),
                  str(metrics.get("pool_size", 0)))
    console.print(table)
    guard = metrics.get("guard")
    if guard and guard.get("kept") == "previous":
        console.print(f"round {metrics['round']} kept the FC model it started with (the defence lost "
                      f"{', '.join(guard['fell'])} on the validation set): the accuracy above is that model's")
    elif guard and guard.get("attempt"):
        console.print(f"round {metrics['round']} kept the defence of retry {guard['attempt']} (more replay, fewer "
                      "passes): the one before lost a kind of request on the validation set")
