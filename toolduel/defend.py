"""The FC model's side of the duel: train it on the adversarial pool of every round so far,
mixed with replayed seed data so that it neither forgets plain queries nor loses whole kinds
(no-call, two-call) that the pool happens to lack."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from toolduel.game_config import GameConfig
from toolduel.schema import Sample
from toolduel.world.warm_start import SFTSettings, fc_example, sft_train


def defence_samples(pool: list[dict], replay: list[Sample], seed: int) -> list[Sample]:
    """The pool's adversarial samples plus the replayed seeds, shuffled together."""
    samples = [Sample.from_dict(record["sample"]) for record in pool] + list(replay)
    random.Random(seed).shuffle(samples)
    return samples


def defend_sft(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path,
               on_step: Callable[[int, int], None] | None = None) -> tuple[Any, Any]:
    """SFT on ``(tools, query) -> gold calls`` with TRL's SFTTrainer; returns (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fc_path)
    model = AutoModelForCausalLM.from_pretrained(fc_path)
    rows = [fc_example(sample) for sample in samples]
    settings = SFTSettings(examples=len(rows), epochs=config.defend_epochs, batch_size=config.defend_batch_size,
                           learning_rate=config.defend_learning_rate, seed=config.seed)
    sft_train(model, tokenizer, rows, settings, output_dir=str(out_dir / "trainer"), report_to=config.report_to,
              on_step=on_step)
    return model, tokenizer


def defend_grpo(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path,
                on_step: Callable[[int, int], None] | None = None) -> tuple[Any, Any]:
    """GRPO with the FC reward (the checker's score, partial credit optional)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from toolduel.rewards import get_fc_reward

    tokenizer = AutoTokenizer.from_pretrained(fc_path)
    rows = [{"prompt": tokenizer.apply_chat_template(s.messages, tools=[t.to_openai() for t in s.tools],
                                                      add_generation_prompt=True, tokenize=False),
             "sample": json.dumps(s.to_dict())} for s in samples]
    generations, prompts_per_step = 4, 8
    steps = max(1, int(len(rows) * config.defend_epochs) // prompts_per_step)

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            if on_step is not None:
                on_step(state.global_step, state.max_steps)

    args = GRPOConfig(output_dir=str(out_dir / "trainer"), max_steps=steps,
                      per_device_train_batch_size=prompts_per_step * generations, num_generations=generations,
                      max_completion_length=128, learning_rate=config.defend_learning_rate, beta=0.0,
                      logging_steps=10, save_strategy="no", report_to=config.report_to,
                      use_cpu=not torch.cuda.is_available(), bf16=False, seed=config.seed, disable_tqdm=True)
    trainer = GRPOTrainer(model=str(fc_path), reward_funcs=[get_fc_reward(partial=config.partial_credit)],
                          args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[_Progress()])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer.model.eval(), tokenizer


def defend(config: GameConfig, fc_path: str | Path, samples: list[Sample], out_dir: Path,
           on_step: Callable[[int, int], None] | None = None) -> tuple[Any, Any]:
    train = defend_sft if config.defend == "sft" else defend_grpo
    return train(config, fc_path, samples, out_dir, on_step=on_step)
