"""Phase 3, defend: train the FC model on the adversarial pool of every round so far, mixed with
replayed seed data so that it neither forgets plain queries nor loses whole kinds (no-call,
two-call) that the pool happens to lack (:func:`toolduel.duel.guard.balanced_replay`). SFT
(:mod:`toolduel.training.sft`), or GRPO with the FC reward (:mod:`toolduel.training.grpo`)."""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from toolduel import run_files as files
from toolduel.data import replay_samples
from toolduel.duel.config import GameConfig
from toolduel.duel.guard import RETRY_EPOCHS, RETRY_REPLAY, balanced_replay
from toolduel.progress import console, progress_bar
from toolduel.prompts import fc_example
from toolduel.run_files import RunFolder
from toolduel.schema import Sample


def defence_samples(pool: list[dict], replay: list[Sample], seed: int) -> list[Sample]:
    """The pool's adversarial samples plus the replayed seeds, shuffled together."""
    samples = [Sample.from_dict(record["sample"]) for record in pool] + list(replay)
    random.Random(seed).shuffle(samples)
    return samples


def defend_sft(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
               on_step: Callable[[int, int], None] | None = None) -> Any:
    """SFT on ``(tools, query) -> gold calls`` with TRL's SFTTrainer; the result goes to ``save_to``."""
    from toolduel.checkpoints import load_tokenizer
    from toolduel.training.arguments import (
        load_for_training,
        per_device_batch,
        save_atomically,
        trainer_settings,
    )
    from toolduel.training.sft import SFTSettings, sft_train

    tokenizer = load_tokenizer(fc_path)
    model, peft_config = load_for_training(fc_path, config, config.fc_lora)
    rows = [fc_example(sample) for sample in samples]
    settings = SFTSettings(epochs=config.defend_epochs, warmup=0.03,
                           batch_size=per_device_batch(config.defend_batch_size, config, "defend_batch_size"),
                           learning_rate=config.defend_learning_rate, max_length=config.defend_max_length,
                           seed=config.seed)
    shared = trainer_settings(config, config.seed)
    trainer_args = {key: shared[key] for key in ("bf16", "activation_checkpointing", "gradient_accumulation_steps")}
    return save_atomically(save_to, lambda temporary: sft_train(
        model, tokenizer, rows, settings, output_dir=str(out_dir / files.TRAINER), report_to=config.report_to,
        on_step=on_step, peft_config=peft_config, trainer_args=trainer_args, save_to=temporary))


def defend_grpo(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
                on_step: Callable[[int, int], None] | None = None) -> Any:
    """GRPO with the FC reward (the checker's score, partial credit optional); the result goes to ``save_to``."""
    from transformers import TrainerCallback

    from toolduel.checkpoints import load_tokenizer
    from toolduel.referee.rewards import get_fc_reward
    from toolduel.training.arguments import per_device_batch, save_trained
    from toolduel.training.grpo import grpo_trainer, render_prompt_rows

    rows = render_prompt_rows(load_tokenizer(fc_path), samples, lambda sample: sample.messages)
    generations, prompts_per_step = 4, 8
    steps = max(1, int(len(rows) * config.defend_epochs) // prompts_per_step)

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            if on_step is not None:
                on_step(state.global_step, state.max_steps)

    batch = per_device_batch(prompts_per_step * generations, config, "the grpo defence's 8 prompts x 4 answers")
    grpo = grpo_trainer(fc_path, rows, [get_fc_reward(partial=config.partial_credit)], lora=config.fc_lora,
                        trainer=config, seed=config.seed, server_port=config.defend_vllm_server_port,
                        callbacks=[Progress()], output_dir=str(out_dir / files.TRAINER), max_steps=steps,
                        per_device_train_batch_size=batch, num_generations=generations, max_completion_length=128,
                        learning_rate=config.defend_learning_rate, beta=0.0, logging_steps=10)
    grpo.train()
    save_trained(grpo, save_to)
    return grpo.model


def defend(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
           on_step: Callable[[int, int], None] | None = None) -> Any:
    """Train the FC model in ``fc_path`` on ``samples``; the new FC model (a full checkpoint, or a
    LoRA adapter with ``fc_lora``) is written to ``save_to``, and returned (on every process; a
    ``PeftModel`` with ``fc_lora``). Under ``accelerate launch`` every process calls this; only the
    main process writes."""
    train = defend_sft if config.defend == "sft" else defend_grpo
    return train(config, fc_path, samples, out_dir, save_to, on_step=on_step)


def phase_defend(run: RunFolder, round_index: int, progress: bool, attempt: int = 0) -> None:
    """Train the FC model on the pool and replay. The guard's ``attempt``-th retry of a rejected
    defence starts from the same FC model with :data:`RETRY_REPLAY` times the replay and
    :data:`RETRY_EPOCHS` times the passes, each time again, and writes to ``retry_<attempt>/``."""
    config, out_dir = run.config, files.defence_dir(run.dir, round_index, attempt)
    pool = files.read_jsonl(run.dir / files.POOL)
    replay_count = config.replay_examples if config.replay_examples is not None \
        else round(config.replay_ratio * len(pool))
    replay_count *= RETRY_REPLAY ** attempt
    if attempt:
        config = dataclasses.replace(config, defend_epochs=config.defend_epochs * RETRY_EPOCHS ** attempt)
    replay = balanced_replay(config, pool, replay_count, round_index) if config.replay_balance \
        else replay_samples(config.seeds, replay_count, f"replay-{round_index}", config.seed)
    samples = defence_samples(pool, replay, seed=config.seed + round_index)
    if not samples:  # nothing harvested yet: the FC model stays as it is
        if run.writer:
            shutil.copytree(run.path("fc_path"), out_dir / files.FC_MODEL, dirs_exist_ok=True)
        console.print("defend: the pool is empty; the FC model is kept as it is")
        run.mark(f"{round_index}:defend", fc_path=out_dir / files.FC_MODEL,
                 fc_path_before_defence=out_dir / files.FC_MODEL)
        return
    before = run.path("fc_path")
    started = time.time()
    with progress_bar("defend", total=None, enabled=progress) as update:
        defend(config, run.path("fc_path"), samples, out_dir, save_to=out_dir / files.FC_MODEL,
               on_step=lambda step, total: update(completed=step, total=total))
    retry = f" (retry {attempt}: {config.defend_epochs:g} passes)" if attempt else ""
    console.print(f"defend: {len(pool)} pool + {len(replay)} replayed examples{retry}, {time.time() - started:.0f}s")
    run.mark(f"{round_index}:defend", fc_path=out_dir / files.FC_MODEL, fc_path_before_defence=before)
