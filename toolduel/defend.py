"""The FC model's side of the duel: train it on the adversarial pool of every round so far,
mixed with replayed seed data so that it neither forgets plain queries nor loses whole kinds
(no-call, two-call) that the pool happens to lack."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from toolduel.game_config import GameConfig
from toolduel.prompts import fc_example
from toolduel.schema import Sample
from toolduel.training.sft import SFTSettings, sft_train


def defence_samples(pool: list[dict], replay: list[Sample], seed: int) -> list[Sample]:
    """The pool's adversarial samples plus the replayed seeds, shuffled together."""
    samples = [Sample.from_dict(record["sample"]) for record in pool] + list(replay)
    random.Random(seed).shuffle(samples)
    return samples


def defend_sft(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
               on_step: Callable[[int, int], None] | None = None) -> Any:
    """SFT on ``(tools, query) -> gold calls`` with TRL's SFTTrainer; the result goes to ``save_to``."""
    from toolduel.checkpoints import load_tokenizer
    from toolduel.training.arguments import load_for_training, per_device_batch, save_atomically, trainer_settings

    tokenizer = load_tokenizer(fc_path)
    model, peft_config = load_for_training(fc_path, config, "fc")
    rows = [fc_example(sample) for sample in samples]
    settings = SFTSettings(examples=len(rows), epochs=config.defend_epochs,
                           batch_size=per_device_batch(config.defend_batch_size, config, "defend_batch_size"),
                           learning_rate=config.defend_learning_rate, max_length=config.defend_max_length,
                           seed=config.seed)
    shared = trainer_settings(config)
    trainer_args = {key: shared[key] for key in ("bf16", "activation_checkpointing", "gradient_accumulation_steps")}
    return save_atomically(save_to, lambda temporary: sft_train(
        model, tokenizer, rows, settings, output_dir=str(out_dir / "trainer"), report_to=config.report_to,
        on_step=on_step, peft_config=peft_config, trainer_args=trainer_args, save_to=temporary))


def defend_grpo(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
                on_step: Callable[[int, int], None] | None = None) -> Any:
    """GRPO with the FC reward (the checker's score, partial credit optional); the result goes to ``save_to``."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from toolduel.checkpoints import load_tokenizer
    from toolduel.referee.rewards import get_fc_reward
    from toolduel.training.arguments import grpo_settings, per_device_batch, save_trained, trainable_model

    tokenizer = load_tokenizer(fc_path)
    rows = [{"prompt": tokenizer.apply_chat_template(s.messages, tools=[t.to_openai() for t in s.tools],
                                                      add_generation_prompt=True, tokenize=False),
             "sample": json.dumps(s.to_dict())} for s in samples]
    generations, prompts_per_step = 4, 8
    steps = max(1, int(len(rows) * config.defend_epochs) // prompts_per_step)

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            if on_step is not None:
                on_step(state.global_step, state.max_steps)

    model, peft_config = trainable_model(fc_path, config, "fc")
    args = GRPOConfig(output_dir=str(out_dir / "trainer"), max_steps=steps,
                      per_device_train_batch_size=per_device_batch(prompts_per_step * generations, config,
                                                                   "the grpo defence's 8 prompts x 4 answers"),
                      num_generations=generations, max_completion_length=128,
                      learning_rate=config.defend_learning_rate, beta=0.0, logging_steps=10,
                      **grpo_settings(config, "fc", model))
    trainer = GRPOTrainer(model=model, reward_funcs=[get_fc_reward(partial=config.partial_credit)],
                          args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=peft_config, callbacks=[_Progress()])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    save_trained(trainer, save_to)
    return trainer.model


def defend(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path, save_to: Path,
           on_step: Callable[[int, int], None] | None = None) -> Any:
    """Train the FC model in ``fc_path`` on ``samples``; the new FC model (a full checkpoint, or a
    LoRA adapter with ``fc_lora``) is written to ``save_to``, and returned (on every process; a
    ``PeftModel`` with ``fc_lora``). Under ``accelerate launch`` every process calls this; only the
    main process writes."""
    train = defend_sft if config.defend == "sft" else defend_grpo
    return train(config, fc_path, samples, out_dir, save_to, on_step=on_step)
