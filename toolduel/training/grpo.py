"""GRPO with TRL: the attack's training of the query model, and the FC model's GRPO defence.

Prompts are rendered to text once, with each row's own tools, exactly as the player is prompted
at inference (:class:`toolduel.prompts.ChatRenderer`), so that TRL sees plain-text prompts; the row's sample goes along as JSON in the ``sample``
column, which the rewards read (:mod:`toolduel.referee.rewards`).

:func:`train_query_model` is the attack of both programs: the duel's, against the round's FC
model, and the black-box attack's, against an endpoint (its reward scores through a ledger).
Every step's validity, attack success and reward statistics (mean, spread, the share of
prompts whose generations were all paid alike) are appended to ``attack_log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolduel import run_files as files
from toolduel.progress import progress_bar
from toolduel.prompts import ChatRenderer, query_model_messages
from toolduel.referee.outcome import step_stats
from toolduel.referee.rewards import QueryReward
from toolduel.schema import Sample
from toolduel.settings import AttackSettings, TrainerSettings
from toolduel.specs import DIMENSIONS, count_outcomes
from toolduel.training.arguments import (
    grpo_settings,
    per_device_batch,
    save_trained,
    trainable_model,
)
from toolduel.training.processes import gather_from_all


class _LeftOutOnPurpose(logging.Filter):
    """The query reward gives None to the queries it leaves out of the update (invalid, or not
    scored); TRL warns of every such batch with a dump of its inputs, which says nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "All reward functions returned None" not in record.getMessage()


_TRL_GRPO_LOG = logging.getLogger("trl.trainer.grpo_trainer")
if not any(isinstance(f, _LeftOutOnPurpose) for f in _TRL_GRPO_LOG.filters):
    _TRL_GRPO_LOG.addFilter(_LeftOutOnPurpose())


def score_completions_only() -> None:
    """Make TRL's fused LM head score only the completions' positions on a CPU, as it does where
    Triton runs it. Elsewhere it scores every position of the batch (fixed tile shapes for
    compiled devices) and zeroes the prompt's afterwards: on a CPU the prompts' tokens, five times
    the completions' in the attack, went through the LM head and a softmax over the vocabulary in
    float32 tiles of 512 MB, which was a third of a GRPO step and 4 GB of its peak memory. The
    log-probabilities are the same (tests/test_training.py). A TRL without the fused head is
    left as it is."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    use_triton = getattr(trl_utils, "_use_triton", None)
    if use_triton is None or not hasattr(trl_utils, "add_fused_lm_head") or getattr(use_triton, "toolduel", False):
        return

    def compact_on_cpu(device: Any) -> bool:
        return device.type == "cpu" or use_triton(device)

    compact_on_cpu.toolduel = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact_on_cpu


def grpo_trainer(model_path: str | Path, rows: list[dict], reward_funcs: list, *, lora: bool,
                 trainer: TrainerSettings, seed: int, server_port: int, callbacks: Sequence[Any] = (),
                 **arguments: Any) -> Any:
    """A TRL ``GRPOTrainer`` for the player in ``model_path`` (a full checkpoint, trained in full
    or with a new LoRA adapter as ``lora`` says, or an adapter folder trained further) on
    ``rows`` (``prompt`` and ``sample`` columns). ``arguments`` are the run's GRPOConfig settings
    (steps, batch, generations, learning rate); the trainer settings add precision, vLLM rollouts
    and accumulation."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from toolduel.checkpoints import load_tokenizer

    score_completions_only()
    tokenizer = load_tokenizer(model_path)
    model, peft_config = trainable_model(model_path, trainer, lora)
    args = GRPOConfig(**arguments, **grpo_settings(trainer, seed, server_port, model))
    grpo = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, peft_config=peft_config, callbacks=list(callbacks))
    grpo.remove_callback(PrinterCallback)  # our progress bars and logs replace its printed lines
    return grpo


def render_prompt_rows(tokenizer: Any, samples: list[Sample], messages: Callable[[Sample], list[dict]]) -> list[dict]:
    """GRPO rows: ``messages(sample)`` rendered with the sample's tools as inference renders them
    (:class:`toolduel.prompts.ChatRenderer`), and the sample as JSON."""
    renderer = ChatRenderer(tokenizer)
    return [{"prompt": renderer.prompt(messages(sample), sample.tools), "sample": json.dumps(sample.to_dict())}
            for sample in samples]


# TRL's reward statistics of a GRPO step, as the attack log names them: the mean and spread of
# the rewards, and the share of prompts whose generations were all paid alike (no signal).
TRL_STEP_METRICS = {"reward": "reward_mean", "reward_std": "reward_std", "frac_reward_zero_std": "zero_signal_groups"}


def trl_step_metrics(logs: dict) -> dict:
    """The attack log's names for TRL's reward statistics in a trainer's ``logs``; a statistic that
    is missing or not a finite number (every query of the step unpaid) is left out."""
    return {ours: float(logs[theirs]) for theirs, ours in TRL_STEP_METRICS.items()
            if isinstance(logs.get(theirs), (int, float)) and math.isfinite(logs[theirs])}


def step_summary(log: list[dict]) -> list[dict]:
    """What a round's metrics line keeps of each step of the attack log."""
    keys = ("step", "attack_success_rate", "validity_rate", "reward_mean", "zero_signal_groups")
    return [{key: step[key] for key in keys if key in step} for step in log]


@dataclass
class AttackResult:
    query_path: Path
    steps: list[dict]


def train_query_model(query_path: str | Path, seeds: list[Sample], reward: QueryReward, out_dir: Path, *,
                      attack: AttackSettings, trainer: TrainerSettings, seed: int, progress: bool = True,
                      on_log: Callable[[str], None] = print, resume_from_checkpoint: str | None = None,
                      callbacks: Sequence[Any] = ()) -> AttackResult:
    """GRPO on the query model in ``query_path``, one seed per prompt, paid by ``reward``; the
    trained model goes to ``out_dir/query_model``.

    ``resume_from_checkpoint`` continues a trainer checkpoint of ``out_dir/trainer`` and keeps the
    log's earlier steps; ``callbacks`` are added to the trainer's. Under ``accelerate launch``
    every process calls this and scores its share of the queries; the step log gathers them all,
    and only the main process writes the log and the checkpoint."""
    from transformers import TrainerCallback

    from toolduel.checkpoints import load_tokenizer

    rows = render_prompt_rows(load_tokenizer(query_path), seeds, query_model_messages)
    log_path = out_dir / files.ATTACK_LOG
    steps: list[dict] = []

    class StepLog(TrainerCallback):
        """A step's record: the referee's rates over its queries (``on_step_end``), then TRL's
        reward statistics of the same step (``on_log``, which the trainer calls right after), then
        one line in the log."""

        def __init__(self, advance: Callable[[int], None]):
            self.advance = advance
            self.step_started = time.perf_counter()
            self.pending: dict | None = None

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            self.step_started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            seconds = time.perf_counter() - self.step_started  # rollouts, rewards and the update
            mine = [o for batch in reward.history for o in batch]
            referee_seconds, reward.seconds = reward.seconds, 0.0  # the FC model's answers, mostly
            reward.history.clear()
            outcomes = gather_from_all(mine)  # every process's queries, not only the main one's
            self.flush(args)  # a step the trainer did not log (it always does, at logging_steps=1)
            floor = reward.settings.floor
            self.pending = {"step": state.global_step, **step_stats(outcomes, floor),
                            "seconds": round(seconds, 3), "referee_seconds": round(referee_seconds, 3)}
            for key, counts in count_outcomes(outcomes, floor).items():
                if counts:  # per spec asked: [queries, weaknesses] (the harvest targets them)
                    self.pending[DIMENSIONS[key]] = counts
            self.advance(1)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - HF callback signature
            if self.pending is not None:
                self.pending |= trl_step_metrics(logs or {})
            self.flush(args)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            self.flush(args)

        def flush(self, args) -> None:  # noqa: ANN001 - HF TrainingArguments
            if self.pending is None:
                return
            record, self.pending = self.pending, None
            steps.append({k: v for k, v in record.items() if not k.endswith("seconds")})
            if args.process_index == 0:  # the processes step in lockstep: the main process's clock times it
                files.append_jsonl(log_path, [record])

    started = time.time()
    batch = per_device_batch(attack.attack_prompts_per_step * attack.num_generations, trainer,
                             "attack_prompts_per_step x num_generations")
    with progress_bar("attack", total=attack.attack_steps, enabled=progress) as advance:
        grpo = grpo_trainer(query_path, rows, [reward], lora=attack.query_lora, trainer=trainer, seed=seed,
                            server_port=attack.vllm_server_port, callbacks=[StepLog(advance), *callbacks],
                            output_dir=str(out_dir / files.TRAINER), max_steps=attack.attack_steps,
                            per_device_train_batch_size=batch, num_generations=attack.num_generations,
                            max_completion_length=attack.completion_tokens(), temperature=attack.query_temperature,
                            learning_rate=attack.attack_learning_rate, beta=attack.beta, logging_steps=1)
        main = grpo.args.process_index == 0
        if main and resume_from_checkpoint is None:
            log_path.unlink(missing_ok=True)  # a rerun of the phase starts its log again
        grpo.train(resume_from_checkpoint=resume_from_checkpoint)
    saved = out_dir / files.QUERY_MODEL
    save_trained(grpo, saved)
    if steps and main:
        on_log(f"attack: {len(steps)} steps in {time.time() - started:.0f}s, attack success "
               f"{steps[0]['attack_success_rate']:.2f} -> {steps[-1]['attack_success_rate']:.2f}, validity "
               f"{steps[-1]['validity_rate']:.2f}")
    return AttackResult(query_path=saved, steps=steps)
