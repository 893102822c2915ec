"""The query model's side of the duel: the attack (GRPO against a frozen FC model) and the harvest.

The query model's prompt is its chat template applied to the seed's tools, gold calls and seed
query (:func:`toolduel.prompts.query_model_messages`), rendered to text once, so that
TRL sees plain-text prompts and every row can carry its own tools.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from toolduel.game_config import GameConfig
from toolduel.models.base import GenerationConfig
from toolduel.progress import progress_bar
from toolduel.prompts import query_model_messages
from toolduel.referee.judge import build_judge
from toolduel.referee.outcome import AttackOutcome, adversarial_sample, score_queries
from toolduel.referee.rewards import QueryReward, QueryRewardSettings
from toolduel.run_files import append_jsonl, write_jsonl_atomic
from toolduel.schema import Sample
from toolduel.world.lexicon import world_lexicon


def reward_settings(config: GameConfig) -> QueryRewardSettings:
    return QueryRewardSettings(form=config.reward_form, invalid_penalty=config.invalid_penalty,
                               duplicate_penalty=config.duplicate_penalty,
                               band=(config.band_low, config.band_high))


def fc_generation(config: GameConfig, samples: int | None = None) -> GenerationConfig:
    """How the FC model answers attacks: sampled when p_F is a mean over k > 1 answers (k:
    ``samples``, else ``fc_samples``), greedily otherwise."""
    temperature = config.fc_temperature if (samples or config.fc_samples) > 1 else 0.0
    return GenerationConfig(max_new_tokens=128, temperature=temperature, seed=config.seed)


def harvest_scoring(config: GameConfig) -> tuple[int, GenerationConfig]:
    """How the FC model answers harvested queries (k and generation): once and greedily, as in
    evaluation, with ``harvest_greedy``; otherwise as in the attack."""
    k = 1 if config.harvest_greedy else config.fc_samples
    return k, fc_generation(config, k)


def step_stats(outcomes: list[AttackOutcome]) -> dict:
    """Validity rate and attack success rate (mean of validity * (1 - p_F)) of a batch of queries;
    queries that could not be scored (``failed``: endpoint, judge or budget) are counted apart."""
    scored = [o for o in outcomes if not o.failed]
    n = len(scored) or 1
    return {
        "queries": len(outcomes),
        "failed": len(outcomes) - len(scored),
        "validity_rate": sum(o.valid for o in scored) / n,
        "attack_success_rate": sum(1.0 - o.fc_success for o in scored if o.valid) / n,
    }


def render_query_prompt(tokenizer: Any, seed: Sample) -> str:
    return tokenizer.apply_chat_template(query_model_messages(seed), tools=[t.to_openai() for t in seed.tools],
                                         add_generation_prompt=True, tokenize=False)


@dataclass
class AttackResult:
    query_path: Path
    steps: list[dict]


def run_attack(config: GameConfig, seeds: list[Sample], fc_model: Any, query_path: str | Path,
               out_dir: Path, progress: bool = True, on_log: Callable[[str], None] = print,
               reward: QueryReward | None = None, judge: Any = None, resume_from_checkpoint: str | None = None,
               callbacks: list | None = None) -> AttackResult:
    """GRPO on the query model; every step's validity and attack success go to ``attack_log.jsonl``.

    ``reward`` replaces the default query reward (the black-box attack scores through its ledger);
    ``judge`` (default: the one the config's judge settings name) joins the validity gate;
    ``resume_from_checkpoint`` continues a trainer checkpoint of ``out_dir/trainer`` and keeps the
    log's earlier steps; ``callbacks`` are added to the trainer's.

    Under ``accelerate launch`` every process calls this and scores its share of the queries;
    the step log gathers them all, and only the main process writes the log and the checkpoint."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from toolduel.checkpoints import load_tokenizer
    from toolduel.training.arguments import grpo_settings, per_device_batch, save_trained, trainable_model
    from toolduel.training.processes import gather_from_all

    tokenizer = load_tokenizer(query_path)
    if reward is None:
        reward = QueryReward(fc_model, k=config.fc_samples, settings=reward_settings(config), lexicon=world_lexicon(),
                             generation=fc_generation(config),
                             judge=judge if judge is not None else build_judge(config))
    rows = [{"prompt": render_query_prompt(tokenizer, seed), "sample": json.dumps(seed.to_dict())} for seed in seeds]
    log_path = out_dir / "attack_log.jsonl"
    steps: list[dict] = []
    model, peft_config = trainable_model(query_path, config, "query")
    args = GRPOConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=config.attack_steps,
        per_device_train_batch_size=per_device_batch(config.attack_prompts_per_step * config.num_generations,
                                                     config, "attack_prompts_per_step x num_generations"),
        num_generations=config.num_generations,
        max_completion_length=config.max_query_tokens,
        temperature=config.query_temperature,
        learning_rate=config.attack_learning_rate,
        beta=config.beta,
        logging_steps=1,
        **grpo_settings(config, "query", model),
    )
    main = args.process_index == 0
    if main and resume_from_checkpoint is None:
        log_path.unlink(missing_ok=True)  # a rerun of the phase starts its log again

    class _StepLog(TrainerCallback):
        def __init__(self, advance: Callable[[int], None]):
            self.advance = advance
            self.step_started = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            self.step_started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            seconds = time.perf_counter() - self.step_started  # rollouts, rewards and the update
            mine = [o for batch in reward.history for o in batch]
            reward.history.clear()
            outcomes = gather_from_all(mine)  # every process's queries, not only the main one's
            record = {"step": state.global_step, **step_stats(outcomes)}
            steps.append(record)
            if main:  # the processes step in lockstep: the main process's clock times the step
                append_jsonl(log_path, [record | {"seconds": round(seconds, 3)}])
            self.advance(1)

    started = time.time()
    with progress_bar("attack", total=config.attack_steps, enabled=progress and main) as advance:
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, peft_config=peft_config, callbacks=[_StepLog(advance)])
        trainer.remove_callback(PrinterCallback)
        for callback in callbacks or []:
            trainer.add_callback(callback)
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    saved = out_dir / "query_model"
    save_trained(trainer, saved)
    if steps and main:
        on_log(f"attack: {len(steps)} steps in {time.time() - started:.0f}s, attack success "
               f"{steps[0]['attack_success_rate']:.2f} -> {steps[-1]['attack_success_rate']:.2f}, validity "
               f"{steps[-1]['validity_rate']:.2f}")
    return AttackResult(query_path=saved, steps=steps)


def sample_queries(config: GameConfig, seeds: list[Sample], query_model: Any, seed: int) -> list[str]:
    """One query per seed from the query model (a ChatModel), sampled as in the attack."""
    generation = GenerationConfig(max_new_tokens=config.max_query_tokens, temperature=config.query_temperature,
                                  seed=seed)
    answers = query_model.generate([query_model_messages(s) for s in seeds], [s.tools for s in seeds], generation)
    return [a.text.strip() for a in answers]


def pool_record(record_id: str, round_index: int, seed: Sample, outcome: AttackOutcome, query_checkpoint: str,
                fc_checkpoint: str) -> dict:
    """A valid query's adversarial pool record, with provenance (layout: :mod:`toolduel.run_files`)."""
    failing = next((v for v in outcome.verdicts if not v["valid"]), None)
    return {
        "id": record_id, "round": round_index, "seed_id": seed.id,
        "query_checkpoint": query_checkpoint, "fc_checkpoint": fc_checkpoint,
        "query": outcome.query, "seed_query": seed.query, "phrasing": None,
        "sample": adversarial_sample(seed, outcome.query).to_dict(),
        "fc_outputs": outcome.fc_outputs, "verdicts": outcome.verdicts, "fc_success": outcome.fc_success,
        "attack_success": outcome.fc_success < 1.0,
        "error_type": failing["error_type"] if failing else None, "kind": failing["kind"] if failing else None,
    }


def harvest(config: GameConfig, round_index: int, seeds: list[Sample], query_model: Any, fc_model: Any,
            query_checkpoint: str, fc_checkpoint: str, out_dir: Path, judge: Any = None) -> tuple[list[dict], dict]:
    """Sample a query per seed, gate validity (rules, and the judge: by default the one the
    config names), let the FC model answer; returns the pool records of this round and the
    harvest stats. Every query, valid or not, goes to ``harvest.jsonl``."""
    queries = sample_queries(config, seeds, query_model, config.seed + round_index)
    k, generation = harvest_scoring(config)
    outcomes = score_queries(fc_model, seeds, queries, k=k, generation=generation, lexicon=world_lexicon(),
                             judge=judge if judge is not None else build_judge(config))
    harvest_records = [{"round": round_index, "seed_id": seed.id, "query": o.query, "valid": o.valid,
                        "reasons": o.reasons if o.error is None else [f"not_scored: {o.error}"],
                        "fc_success": o.fc_success} for seed, o in zip(seeds, outcomes)]
    write_jsonl_atomic(out_dir / "harvest.jsonl", harvest_records)
    pool = [pool_record(f"r{round_index}-{seed.id}", round_index, seed, outcome, query_checkpoint, fc_checkpoint)
            for seed, outcome in zip(seeds, outcomes)
            if outcome.valid and (config.harvest_keep == "valid" or outcome.fc_success < 1.0)]
    return pool[:config.pool_budget], step_stats(outcomes)
