"""Supervised fine-tuning with TRL's SFTTrainer: the defence's SFT and the warm starts.

A row is a conversation and its tools (``{"messages": [...], "tools": "<JSON>"}``,
:func:`toolduel.prompts.fc_example`). It is rendered and tokenized here by
:meth:`toolduel.prompts.ChatRenderer.encode`, the rendering the model is later prompted with
(a template without tool support gets the tools in its system message, at training as at
inference), and the loss falls on the assistant turns only. On a CPU a trainer subclass sends
only those positions through the LM head (:func:`_sft_trainer_class`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolduel.prompts import ChatRenderer
from toolduel.schema import Tool


@dataclass
class SFTSettings:
    """How long and how hard to train."""

    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 1e-4
    warmup: float = 0.05  # a fraction of the steps, or (>= 1) a number of steps
    schedule: str = "cosine"  # any transformers lr_scheduler_type
    max_length: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError(f"batch_size, epochs and learning_rate must be positive, got {self}")


def encode_rows(tokenizer: Any, rows: list[dict], renderer: ChatRenderer | None = None) -> list[dict]:
    """``input_ids`` and ``assistant_masks`` of each row, rendered as at inference."""
    renderer = renderer or ChatRenderer(tokenizer)
    encoded = []
    for row in rows:
        tools = [Tool.from_any(tool) for tool in json.loads(row.get("tools") or "[]")]
        encoded.append(renderer.encode(row["messages"], tools))
    return encoded


def sft_train(model: Any, tokenizer: Any, rows: list[dict], settings: SFTSettings, output_dir: str,
              report_to: str = "none", on_step: Callable[[int, int], None] | None = None, peft_config: Any = None,
              trainer_args: dict | None = None, save_to: str | None = None,
              renderer: ChatRenderer | None = None) -> Any:
    """Fine-tune ``model`` in place on ``rows`` with TRL's SFTTrainer; returns the model.

    ``on_step(step, total)`` is called after every optimizer step (for a progress bar).
    ``peft_config``: train a LoRA adapter instead (the returned model is the ``PeftModel``);
    ``trainer_args`` override SFTConfig settings (precision, accumulation, checkpointing);
    ``save_to``: the trainer saves the result there (under ``accelerate launch`` every process
    calls this, and DeepSpeed ZeRO-3 gathers the weights from all of them); ``renderer``: how
    rows are rendered (default: the tokenizer's chat template, as :class:`ChatRenderer` does)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF callback signature
            if on_step is not None:
                on_step(state.global_step, state.max_steps)

    torch.manual_seed(settings.seed)
    dataset = Dataset.from_list(encode_rows(tokenizer, rows, renderer))
    config = SFTConfig(**dict(
        output_dir=output_dir,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.schedule,
        warmup_steps=settings.warmup,
        weight_decay=0.0,
        max_length=settings.max_length,
        completion_only_loss=False,  # the rows carry their own masks (assistant_masks)
        assistant_only_loss=False,
        activation_checkpointing=False,  # TRL turns it on by default; the trainer settings say when it is wanted
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        report_to=report_to,
        logging_steps=50,
        disable_tqdm=on_step is not None,
        seed=settings.seed,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length",  # less padding: fewer tokens to push
    ) | (trainer_args or {}))
    trainer = _sft_trainer_class()(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                   callbacks=[Progress()], peft_config=peft_config)
    if on_step is not None:  # our bar replaces the trainer's printed log lines
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    if save_to is not None:
        trainer.save_model(save_to)
    trained = trainer.model if peft_config is not None else model
    trained.eval()
    return trained


def _sft_trainer_class() -> type:
    """TRL's SFTTrainer, with a training loss that sends only labelled positions through the LM head
    when the model runs unwrapped on a CPU.

    TRL's fused LM head scores every position unless it runs on a Triton device (it keeps tile
    shapes fixed for compilers elsewhere). With SmolLM2's 49k-token vocabulary that is most of a
    CPU step's LM head, nearly all of it spent on tool lists and queries that carry no loss. The loss is
    the same (the answer tokens' summed NLL over ``num_items_in_batch``); TRL's entropy and
    token-accuracy metrics are not logged on this path. Wrapped models (DDP, DeepSpeed), GPUs,
    evaluation and ``return_outputs`` keep TRL's own path."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class LabelledPositionsSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if (return_outputs or not model.training or model.device.type != "cpu"
                    or self.accelerator.unwrap_model(model) is not model):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
            labels = inputs["labels"][:, 1:]
            mask = labels != -100
            backbone_inputs = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
            # accelerate puts mixed precision around the model's own forward, which this path
            # goes past: bf16 autocast (with bf16 on) is entered here.
            with self.accelerator.autocast():
                hidden = causal_lm.base_model(**backbone_inputs).last_hidden_state[:, :-1]
                logits = causal_lm.get_output_embeddings()(hidden[mask])
            nll = F.cross_entropy(logits.float(), labels[mask], reduction="sum")
            items = mask.sum() if num_items_in_batch is None else num_items_in_batch
            return nll / torch.as_tensor(items, device=nll.device).clamp(min=1)

    return LabelledPositionsSFTTrainer
