"""The black-box attack (``toolduel attack``): a query model learns to break an FC model that it
can only reach through an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, a hosted API).

Only the query model is trained, by the same GRPO attack as the duel's
(:func:`toolduel.training.grpo.train_query_model`), with a reward that scores every query
through the ledger (:mod:`toolduel.blackbox.ledger`), which
sends each distinct query to the endpoint once, within the request budget, and writes its
record the moment its answers arrive. Then the trained query model rewrites fresh seeds (the
harvest), and the adversarial set and the weakness report are written.

    OUT/
      config.yaml        the settings (the API key's variable name, never the key)
      state.json         phases done, requests sent, why the run last stopped
      queries.jsonl      every query: scored once, or failed with its reason (see toolduel.blackbox.ledger)
      judge_cache.jsonl  the judge's verdicts, with a judge
      attack_log.jsonl   per GRPO step: queries, failed, validity and attack success rates, and
                         TRL's reward mean, spread and share of prompts paid alike
      trainer/           the latest training checkpoint, which --resume continues
      query_model/       the trained query model
      pool.jsonl         the adversarial set: valid queries that beat the endpoint (pool records)
      pool_dataset/      the same as a Hugging Face dataset (save_to_disk)
      metrics.jsonl      one line: validity, attack success, queries, requests (for the report)
      report/            the weakness report (HTML + PNG)

A run stops cleanly, with everything so far on disk, when the request budget is spent (the
budget can be raised on resume) or when ``failure_limit`` queries in a row got no answer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from toolduel import run_files as files
from toolduel.blackbox.config import BlackBoxConfig
from toolduel.blackbox.ledger import (
    BUDGET_SPENT,
    LedgerReward,
    QueryLedger,
    RequestBudget,
    latest_records,
    outcome_from_record,
    recorded_requests,
)
from toolduel.config import ConfigError, load_config, to_yaml
from toolduel.data import WORLD_TRAIN, seed_pool, seed_samples
from toolduel.progress import console, progress_bar
from toolduel.prompts import STYLE_KEY, sample_queries
from toolduel.referee.judge import NOT_ASKED, build_judge
from toolduel.referee.outcome import TOOL_MOVE_KEY, pool_record, step_stats
from toolduel.run_files import RunFolder, seeded_draw
from toolduel.schema import Sample
from toolduel.specs import SpecDraw, attack_spec_counts, specified, specified_seeds, written_edits_of
from toolduel.training.arguments import generation_dtype
from toolduel.training.grpo import step_summary, train_query_model
from toolduel.world.lexicon import world_lexicon

WORLD_POOL = 1000  # world:train seeds: the pool the attack and the harvest draw from
ATTACK_STATE = {"requests_sent": 0, "stopped": None}  # besides the phases done


@dataclass
class AttackSummary:
    out: Path
    stopped: str | None  # None: every phase done; "budget" or "endpoint": why the run stopped early
    message: str


def start_attack(config: BlackBoxConfig) -> RunFolder:
    """A new attack folder for ``config``; with no ``model``, the one the endpoint lists."""
    folder = Path(config.out or f"runs/attack-{time.strftime('%Y%m%d-%H%M%S')}")
    config = dataclasses.replace(config, out=str(folder))
    if not config.model:
        from toolduel.models.endpoint import served_model

        config = dataclasses.replace(config, model=served_model(config.endpoint, config.api_key_env, config.timeout))
    RunFolder.create(folder, to_yaml(config), "an attack")
    return RunFolder(folder, config, defaults=ATTACK_STATE)


def resume_attack(folder: str | Path, max_requests: int | None = None) -> RunFolder:
    """The attack in ``folder``; ``max_requests`` raises (or sets) its request budget."""
    folder = Path(folder)
    if not (folder / files.CONFIG).exists():
        raise ConfigError(f"{folder} holds no attack to resume ({files.CONFIG} is missing)")
    # the new budget is read and checked as the setting it is before anything is written
    config = load_config(BlackBoxConfig, folder / files.CONFIG,
                         overrides=None if max_requests is None else {"max_requests": max_requests})
    if max_requests is not None:
        files.write_text_atomic(folder / files.CONFIG, to_yaml(config))
    return RunFolder(folder, config, defaults=ATTACK_STATE)


def attack_seeds(config: BlackBoxConfig) -> list[Sample]:
    """The seed samples with gold calls; malformed records skipped (``skip_bad``) are named.
    ``world:train`` is a fixed pool of the world's training requests (``seeds_limit`` of them,
    else :data:`WORLD_POOL`), the same on every resume."""
    if config.seeds == WORLD_TRAIN:
        return seed_samples(WORLD_TRAIN, config.seeds_limit or WORLD_POOL, "pool", config.seed)
    seeds, skipped = seed_pool(config.seeds, limit=config.seeds_limit, skip_bad=config.skip_bad,
                               bfcl_root=config.bfcl_root)
    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(line)}", highlight=False, markup=True)
    return seeds


# --- the phases ----------------------------------------------------------------------------------


def _attack_control(ledger: QueryLedger, save_steps: int, min_requests: int) -> Any:
    from transformers import TrainerCallback

    class AttackControl(TrainerCallback):
        """A checkpoint every ``save_steps`` steps and at the end; a stop, with a checkpoint, when
        the budget cannot pay for one more query or the endpoint stopped answering. Only the
        newest checkpoint is kept."""

        stopped: str | None = None

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            self.stopped = _stop_reason(ledger, min_requests)
            if self.stopped:
                control.should_training_stop = True
            if self.stopped or state.global_step % save_steps == 0 or state.global_step >= state.max_steps:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            newest = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            for older in Path(args.output_dir).glob("checkpoint-*"):
                if older != newest:
                    shutil.rmtree(older, ignore_errors=True)
            return control

    return AttackControl()


def last_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete trainer checkpoint (its trainer_state.json is written last)."""
    complete = [p for p in trainer_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()
                and p.name.split("-")[-1].isdigit()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


class _DropUnscorableWarning(logging.Filter):
    """TRL warns, with the whole sample, for each query that has no reward; the ledger has
    already recorded why (a failed request), so the warning would only bury the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("All reward functions returned None")


def attack_endpoint(run: RunFolder, seeds: list[Sample], ledger: QueryLedger, query_path: str, progress: bool,
                    on_log: Callable[[str], None]) -> str | None:
    """GRPO on the query model, every query scored through the ledger; a stop reason, or None
    when every step is done. A resumed attack continues the newest trainer checkpoint."""
    config = run.config
    chosen = specified_seeds(config, seeded_draw(seeds, config.attack_steps * config.attack_prompts_per_step,
                                                 "attack", config.seed), "attack")
    checkpoint = last_checkpoint(run.dir / files.TRAINER)
    if checkpoint is not None:  # steps logged after the checkpoint are played again: drop their lines
        step = int(checkpoint.name.split("-")[-1])
        kept = []
        for record in files.iter_jsonl(run.dir / files.ATTACK_LOG, required=("step",),
                                       on_problem=lambda problem: on_log(f"attack log: {problem}")):
            if not isinstance(record["step"], int) or isinstance(record["step"], bool):
                on_log(f"attack log: a line with step {str(record['step'])[:20]!r}, not a number; left out")
            elif record["step"] <= step:
                kept.append(record)
        files.write_jsonl_atomic(run.dir / files.ATTACK_LOG, kept)
        on_log(f"attack: continuing from the checkpoint of step {step}")
    control = _attack_control(ledger, config.save_steps, config.fc_samples)
    trl_logger = logging.getLogger("trl.trainer.grpo_trainer")
    quiet = _DropUnscorableWarning()
    trl_logger.addFilter(quiet)
    try:
        train_query_model(query_path, chosen, LedgerReward(ledger, config.reward_settings()), run.dir, attack=config,
                          trainer=config, seed=config.seed, progress=progress, on_log=on_log,
                          resume_from_checkpoint=str(checkpoint) if checkpoint else None, callbacks=[control])
    finally:
        trl_logger.removeFilter(quiet)
    if control.stopped is None:
        run.mark("attack")
    return control.stopped


def harvest_endpoint(run: RunFolder, seeds: list[Sample], ledger: QueryLedger, progress: bool) -> str | None:
    """The trained query model rewrites ``harvest_seeds`` seeds, a batch at a time, each batch
    scored through the ledger (a resumed harvest samples the same queries and pays nothing twice).
    Each batch's specs (style, tool move) are drawn by Thompson sampling over the weaknesses found
    per spec, the attack's and the harvest's batches' so far (:class:`toolduel.specs.SpecDraw`)."""
    from toolduel.models import load_model

    config = run.config
    chosen = seeded_draw(seeds, config.harvest_seeds, "harvest", config.seed)
    if not chosen:
        run.mark("harvest")
        return None
    specs = SpecDraw(config, "harvest", attack_spec_counts(run.dir))
    query_model = load_model({"backend": "transformers", "path": str(run.dir / files.QUERY_MODEL),
                              "batch_size": config.batch_size, "name": "query model",
                              "dtype": generation_dtype(config)})
    outcomes = []
    with progress_bar("harvest", total=len(chosen), enabled=progress) as advance:
        for start in range(0, len(chosen), config.batch_size):
            stop = _stop_reason(ledger, config.fc_samples)
            if stop:
                return stop
            batch = specs.draw(chosen[start:start + config.batch_size])
            queries = sample_queries(query_model, batch, config.query_generation(seed=config.seed + 1 + start))
            scored = ledger.score(batch, queries, phase="harvest")
            specs.found(scored, config.solvability_floor)
            outcomes.extend(scored)
            advance(len(batch))
    if any(outcome.error in (BUDGET_SPENT, NOT_ASKED) for outcome in outcomes):  # a batch not paid for in full
        return "budget"
    if ledger.outage is not None:
        return "endpoint"
    files.write_json_atomic(run.dir / files.HARVEST_STATS, step_stats(outcomes, config.solvability_floor))
    run.mark("harvest")
    return None


def _stop_reason(ledger: QueryLedger, min_requests: int) -> str | None:
    remaining = ledger.budget.remaining
    if remaining is not None and remaining < min_requests:
        return "budget"
    return "endpoint" if ledger.outage is not None else None


def write_findings(run: RunFolder, seeds: list[Sample], on_log: Callable[[str], None]) -> dict:
    """The adversarial set (pool.jsonl and a dataset), the metrics line and the report, all
    rebuilt from the ledger (so a stopped or resumed run writes them again, complete)."""
    config = run.config
    records = list(latest_records(run.dir / files.QUERIES).values())
    scored = [r for r in records if r.get("status") == "scored"]
    by_id = {seed.id: seed for seed in seeds}
    adversarial, unknown = [], set()
    endpoint = f"{config.model} at {config.endpoint}"
    for record in scored:
        outcome = outcome_from_record(record)
        if not outcome.valid or (config.harvest_keep == "successful" and not outcome.weakness(config.solvability_floor)):
            continue
        if record["seed_id"] not in by_id:
            unknown.add(record["seed_id"])
            continue
        where = f"step {record['step']}" if record.get("step") else files.QUERY_MODEL
        seed = specified(by_id[record["seed_id"]], written_edits_of(config),
                         **{STYLE_KEY: outcome.style, TOOL_MOVE_KEY: outcome.tool_move})
        adversarial.append(pool_record(record["id"], 1, seed, outcome, where,
                                       endpoint) | {"phase": record["phase"], "step": record.get("step")})
    if unknown:
        on_log(f"left out: queries of {len(unknown)} seed(s) no longer in {config.seeds}")
    files.write_derived_jsonl(run.dir / files.POOL, adversarial, str(run.dir / files.QUERIES))
    files.write_pool_dataset(adversarial, run.dir / files.POOL_DATASET)
    stats = step_stats([outcome_from_record(r) for r in records], config.solvability_floor)
    metrics = {"round": 1, "accuracy": {}, "attack_success_rate": None,
               "attack_success_rate_before_defence": stats["attack_success_rate"],
               "validity_rate": stats["validity_rate"], "pool_size": len(adversarial), "queries": len(records),
               "scored": len(scored), "failed": len(records) - len(scored), "requests": run.state["requests_sent"],
               "attack_steps": step_summary(files.read_jsonl(run.dir / files.ATTACK_LOG))}
    files.write_jsonl_atomic(run.dir / files.METRICS, [metrics])
    from toolduel.report import build_report

    build_report(run.dir)
    return metrics


# --- the whole attack ----------------------------------------------------------------------------


def query_model_path(config: BlackBoxConfig, progress: bool = True) -> str:
    if config.query_model:
        return config.query_model
    from toolduel.training.warm_start import ensure_world_models

    return str(ensure_world_models(config.world_budget, progress=progress).query_path)


def run_blackbox(run: RunFolder, progress: bool = True, on_log: Callable[[str], None] = console.print) -> AttackSummary:
    """Play every phase not yet done; stop early when the budget or the endpoint gives out."""
    config = run.config
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("toolduel attack runs in one process (the endpoint does the FC model's work); "
                          "start it without accelerate launch or torchrun")
    seeds = attack_seeds(config)
    # the ledger's count stands where the state's was lost or lowered: a resumed run never overspends
    sent = max(run.state["requests_sent"], recorded_requests(run.dir / files.QUERIES))
    budget = RequestBudget(config.max_requests, sent,
                           save=lambda used: run.save(requests_sent=used))
    fc_model = config.endpoint_model()
    fc_model.retry_permit = budget.permit  # a retry is a request the budget pays for
    ledger = QueryLedger(run.dir / files.QUERIES, fc_model, config.fc_samples,
                         config.fc_generation(seed=config.seed), budget, judge=build_judge(config, budget=budget), lexicon=world_lexicon(),
                         failure_limit=config.failure_limit)
    stopped = _stop_reason(ledger, config.fc_samples)
    if stopped is None and not run.done("attack"):
        stopped = attack_endpoint(run, seeds, ledger, query_model_path(config, progress), progress, on_log)
    if stopped is None and not run.done("harvest"):
        stopped = harvest_endpoint(run, seeds, ledger, progress)
    run.save(stopped=stopped)
    metrics = write_findings(run, seeds, on_log)
    return AttackSummary(run.dir, stopped, _summary_message(run, metrics, stopped, ledger))


def _summary_message(run: RunFolder, metrics: dict, stopped: str | None, ledger: QueryLedger) -> str:
    counts = (f"{metrics['scored']} queries scored, {metrics['failed']} failed, {metrics['pool_size']} in the "
              f"adversarial set, {metrics['requests']} requests sent")
    if stopped == "budget":
        return (f"stopped: the request budget of {run.config.max_requests} is spent ({counts}). Everything is in "
                f"{run.dir}; to go on, raise the budget: toolduel attack --resume {run.dir} --max-requests N")
    if stopped == "endpoint":
        return (f"stopped: {run.config.failure_limit} queries in a row got no answer from the endpoint (last error: "
                f"{ledger.outage or ledger.last_error}; {counts}). Everything so far is in {run.dir}; when the "
                f"endpoint is back: toolduel attack --resume {run.dir}")
    return f"done: {counts}. Adversarial set: {run.dir / files.POOL}; report: {run.dir / files.REPORT / 'report.html'}"
