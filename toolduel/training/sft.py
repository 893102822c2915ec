"""Supervised fine-tuning with TRL's SFTTrainer: the defence's SFT and the warm starts.

The loss falls on the answers only. On a CPU, a trainer subclass sends only the labelled
positions through the LM head (:func:`_sft_trainer_class`). A warm-start schedule can hold
its learning rate flat until a probe shows the model answering exactly, then decay
(:class:`SFTSettings`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger(__name__)


@dataclass
class SFTSettings:
    """How long and how hard to train one warm start."""

    examples: int
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup: float = 0.03
    # The learning rate holds after warmup and falls (cosine) over this last fraction of the
    # steps; 1.0 is a plain cosine schedule. A tiny model forms its copying circuits late and
    # suddenly; a long flat stretch lets that happen before the rate is gone (docs/BENCHMARKS.md).
    decay: float = 1.0
    adam_beta2: float = 0.999
    max_length: int = 512
    answer_only_loss: bool = True  # False: the loss covers the prompt (tools, queries) too
    # With probe rows given to sft_train: start the decay as soon as this share of them is
    # answered exactly (teacher-forced, every `probe_every` steps), i.e. once the copying
    # circuit has formed, and stop when the decay ends. A late switch keeps the rate flat past
    # the planned decay point (the data is gone over again), up to `max_flat` times the planned
    # flat stretch; a decay started before copying works leaves a model that cannot copy.
    decay_when_exact: float | None = None
    probe_every: int = 100
    max_flat: float = 1.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.examples < 1 or self.batch_size < 1 or self.epochs <= 0:
            raise ValueError(f"examples, batch_size and epochs must be positive, got {self}; "
                             "use the 'test' budget for a quick build")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay is the fraction of steps the learning rate falls over, in (0, 1]; got {self.decay}")
        if self.decay_when_exact is not None and (self.decay == 1 or self.probe_every < 1 or self.max_flat < 1):
            raise ValueError("decay_when_exact needs a flat stretch to end (decay < 1), probe_every >= 1 and "
                             "max_flat >= 1")


def answer_batches(tokenizer: Any, rows: list[dict], batch_size: int = 32) -> list[tuple[Any, Any, Any]]:
    """Single-turn FC ``rows`` tokenized and padded once, as (ids, attention mask, answer mask)
    batches for :func:`answer_exact_rate`."""
    import torch

    encoded = [tokenizer.apply_chat_template(row["prompt"] + row["completion"], tools=json.loads(row["tools"]),
                                             return_dict=True, return_assistant_tokens_mask=True) for row in rows]
    batches = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        length = max(len(e["input_ids"]) for e in chunk)
        ids = torch.full((len(chunk), length), tokenizer.pad_token_id)
        attention = torch.zeros((len(chunk), length), dtype=torch.long)
        scored = torch.zeros((len(chunk), length), dtype=torch.bool)
        for i, e in enumerate(chunk):
            size = len(e["input_ids"])
            ids[i, :size], attention[i, :size] = torch.tensor(e["input_ids"]), 1
            scored[i, :size] = torch.tensor(e["assistant_masks"], dtype=torch.bool)
        batches.append((ids, attention, scored))
    return batches


def answer_exact_rate(model: Any, batches: list[tuple[Any, Any, Any]]) -> float:
    """Share of the rows in ``batches`` (:func:`answer_batches`) whose every answer token is the
    model's top prediction given the gold tokens before it: exactly the rows greedy decoding
    answers right."""
    import torch

    was_training, exact = model.training, 0
    model.eval()
    with torch.no_grad():
        for ids, attention, scored in batches:
            logits = model(input_ids=ids.to(model.device), attention_mask=attention.to(model.device)).logits
            predicted = logits[:, :-1].argmax(-1).cpu()
            exact += ((predicted == ids[:, 1:]) | ~scored[:, 1:]).all(1).sum().item()
    model.train(was_training)
    return exact / sum(len(ids) for ids, _, _ in batches)


class _FlatThenDecay:
    """The learning-rate factor of a warmup-stable-decay schedule whose decay can be moved
    earlier while training runs (:meth:`decay_now`): linear warmup, flat, cosine to zero."""

    def __init__(self, warmup_steps: int, decay_start: int, decay_steps: int):
        self.warmup_steps, self.decay_start, self.decay_steps = warmup_steps, decay_start, decay_steps
        self.moved_at: int | None = None

    def decay_now(self, step: int) -> None:
        self.decay_start, self.moved_at = step, step

    @property
    def end(self) -> int:
        return self.decay_start + self.decay_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        if step < self.decay_start:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / self.decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def sft_train(model: Any, tokenizer: Any, rows: list[dict], settings: SFTSettings, output_dir: str,
              report_to: str = "none",
              on_step: Callable[[int, int], None] | None = None, peft_config: Any = None,
              trainer_args: dict | None = None, save_to: str | None = None,
              probe_rows: list[dict] | None = None) -> Any:
    """Fine-tune ``model`` in place on ``rows`` with TRL's SFTTrainer; returns the model.

    ``on_step(step, total)`` is called after every optimizer step (for a progress bar).
    ``probe_rows`` (single-turn FC rows) with ``settings.decay_when_exact``: the decay starts
    once the model answers that share of them exactly, and training ends with it.
    ``peft_config``: train a LoRA adapter instead (the returned model is the ``PeftModel``);
    ``trainer_args`` override SFTConfig settings (precision, accumulation, checkpointing);
    ``save_to``: the trainer saves the result there (under ``accelerate launch`` every process
    calls this, and DeepSpeed ZeRO-3 gathers the weights from all of them)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if on_step is not None:
                on_step(state.global_step, state.max_steps)

    torch.manual_seed(settings.seed)
    columns = ("prompt", "completion", "messages", "tools")
    dataset = Dataset.from_list([{k: v for k, v in row.items() if k in columns} for row in rows])
    multi_turn = "messages" in rows[0]  # loss on every assistant turn, through the template's generation marks
    config = SFTConfig(**dict(
        output_dir=output_dir,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine" if settings.decay == 1 else "warmup_stable_decay",
        warmup_steps=settings.warmup,
        adam_beta2=settings.adam_beta2,
        weight_decay=0.0,
        max_length=settings.max_length,
        completion_only_loss=settings.answer_only_loss and not multi_turn,
        assistant_only_loss=settings.answer_only_loss and multi_turn,
        activation_checkpointing=False,  # TRL turns it on by default; a 1M model has no memory to save
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        report_to=report_to,
        logging_steps=50,
        disable_tqdm=on_step is not None,
        seed=settings.seed,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length",  # less padding: a third fewer tokens to push
    ) | (trainer_args or {}))
    callbacks: list[Any] = [_Progress()]
    schedule = None
    if settings.decay < 1:
        steps = math.ceil(len(dataset) / (config.per_device_train_batch_size * config.gradient_accumulation_steps
                                          * config.world_size)) * settings.epochs
        decay_steps = max(1, round(settings.decay * steps))
        config.lr_scheduler_kwargs = {"num_decay_steps": decay_steps}
        if settings.decay_when_exact is not None and probe_rows:
            latest_decay = math.ceil(settings.max_flat * (math.ceil(steps) - decay_steps))
            schedule = _FlatThenDecay(math.ceil(settings.warmup * steps) if settings.warmup < 1 else
                                      int(settings.warmup), latest_decay, decay_steps)
            config.num_train_epochs = settings.epochs * (latest_decay + decay_steps) / steps  # room to go on
            callbacks.append(_decay_when_copying(schedule, tokenizer, probe_rows, settings))
    trainer = _sft_trainer_class()(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                   callbacks=callbacks, peft_config=peft_config)
    trainer.lr_lambda = schedule
    if on_step is not None:  # our bar replaces the trainer's printed log lines
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    if save_to is not None:
        trainer.save_model(save_to)
    trained = trainer.model if peft_config is not None else model
    trained.eval()
    return trained


def _decay_when_copying(schedule: _FlatThenDecay, tokenizer: Any, probe_rows: list[dict],
                        settings: SFTSettings) -> Any:
    """A callback that probes the model every ``probe_every`` steps of the flat stretch, moves the
    decay to now when the exact-answer rate reaches ``decay_when_exact``, and stops training
    when the decay has run its course."""
    from transformers import TrainerCallback

    batches = answer_batches(tokenizer, probe_rows)  # the same rows at every reading

    class DecayWhenCopying(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if schedule.moved_at is None and step % settings.probe_every == 0 and step < schedule.decay_start:
                rate = answer_exact_rate(model, batches)
                _log.info("step %d: %.3f of the probe rows answered exactly", step, rate)
                if rate >= settings.decay_when_exact:
                    schedule.decay_now(step)
                    _log.info("step %d: the decay starts; training ends at step %d", step, schedule.end)
            if step >= schedule.end:
                control.should_training_stop = True

    return DecayWhenCopying()


def _sft_trainer_class() -> type:
    """TRL's SFTTrainer, with a training loss that sends only labelled positions through the LM head
    when the model runs unwrapped on a CPU.

    TRL's fused LM head scores every position unless it runs on a Triton device (it keeps tile
    shapes fixed for compilers elsewhere). For the world's 1M-parameter models that is a quarter of
    each CPU step, nearly all of it spent on tool lists and queries that carry no loss. The loss is
    the same (the answer tokens' summed NLL over ``num_items_in_batch``); TRL's entropy and
    token-accuracy metrics are not logged on this path. Wrapped models (DDP, DeepSpeed), GPUs,
    evaluation and ``return_outputs`` keep TRL's own path. ``lr_lambda``, when set on a trainer,
    replaces the configured learning-rate schedule (a factor per step, as ``LambdaLR`` takes)."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class LabelledPositionsSFTTrainer(SFTTrainer):
        lr_lambda = None  # a learning-rate factor per step replacing the configured schedule

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None and self.lr_lambda is not None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.lr_lambda)
            return super().create_scheduler(num_training_steps, optimizer)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if (return_outputs or not model.training or model.device.type != "cpu"
                    or self.accelerator.unwrap_model(model) is not model):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            backbone_inputs = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
            hidden = causal_lm.base_model(**backbone_inputs).last_hidden_state[:, :-1]
            logits = causal_lm.get_output_embeddings()(hidden[mask])
            nll = F.cross_entropy(logits.float(), labels[mask], reduction="sum")
            items = mask.sum() if num_items_in_batch is None else num_items_in_batch
            return nll / torch.as_tensor(items, device=nll.device).clamp(min=1)

    return LabelledPositionsSFTTrainer
