"""Warm starts: supervised fine-tuning of the tiny FC model and the tiny query model with
TRL's SFTTrainer; the loss falls on the answers only.

- FC model: tools (through the chat template) and a ``plain`` user query -> the gold calls in
  ``<tool_call>`` blocks (:func:`toolduel.parsing.format_calls`), or a short sentence when no
  tool fits. Plain phrasing only: the gap to perturbed queries is what the game must find.
  Training rows are conversations of a few such turns over one tool list
  (:func:`fc_conversation`); :func:`fc_example` gives the single-turn row.
- Query model: tools, the gold calls, a seed query and optionally a style -> a query asking
  for the same calls in that style, over every phrasing kind (the stand-in for a real
  model's knowledge of language). Without a style line it writes any style.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolduel.parsing import format_calls
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.catalog import all_functions, functions_by_name
from toolduel.world.generator import KINDS, generate_samples, render_query, rephrase, sample_arguments, split_of
from toolduel.world.phrasing import PHRASINGS, PLAIN

_log = logging.getLogger(__name__)
NO_CALL_REPLY = "None of the available tools can help with that."
QUERY_SYSTEM = "Write one user request that needs exactly the calls below, and nothing else."
FC_KIND_WEIGHTS = (0.7, 0.15, 0.15)  # one_call, two_call, no_call


def _plain_number(value: Any) -> Any:
    """12.0 -> 12: the checker accepts an int for a float, and the query says "12"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain_number(v) for v in value]
    return value


def calls_text(calls: list[Call]) -> str:
    return format_calls([Call(c.name, {k: _plain_number(v) for k, v in c.arguments.items()}) for c in calls])


def fc_target(sample: Sample) -> str:
    """What the FC model should answer: the gold calls, or a plain sentence when none fits."""
    if not sample.gold:
        return NO_CALL_REPLY
    return calls_text([gold.canonical_call() for gold in sample.gold])


def _tools_json(tools: list[Tool]) -> str:
    return json.dumps([tool.to_openai() for tool in tools])


def fc_example(sample: Sample) -> dict:
    """A TRL conversational prompt-completion row (``tools`` as JSON, which TRL decodes)."""
    return {"prompt": list(sample.messages),
            "completion": [{"role": "assistant", "content": fc_target(sample)}],
            "tools": _tools_json(sample.tools)}


def fc_conversation(samples: list[Sample]) -> dict:
    """One TRL conversational row: several (query, answer) turns over the first sample's tools.

    The tool list is most of a prompt's tokens; sharing it across turns lets one training
    sequence teach ``len(samples)`` answers for little more than the cost of one, which is
    what makes a 30k-answer warm start fit in minutes on a CPU. The first turn is exactly
    the single-turn prompt the model is evaluated on."""
    messages = []
    for sample in samples:
        messages += [{"role": "user", "content": sample.query},
                     {"role": "assistant", "content": fc_target(sample)}]
    return {"messages": messages, "tools": _tools_json(samples[0].tools)}


def _more_turns(first: Sample, turns: int, rng: random.Random,
                phrasings: tuple[str, ...] = (PLAIN,)) -> list[Sample]:
    """Further requests, each phrased in one of ``phrasings``, that ``first``'s tool list can
    serve (or, one time in seven, cannot: a function of an unrelated domain is asked for)."""
    offered = [functions_by_name()[t.name] for t in first.tools]
    unrelated = [f for f in all_functions() if not any(f.domain == o.domain for o in offered)]
    tools = {t.name: t for t in first.tools}
    out: list[Sample] = []
    while len(out) < turns:
        roll = rng.random()
        if roll < 1 / 7:
            kind, picks = "no_call", [rng.choice(unrelated)]
        elif roll < 0.8 or len(offered) < 2:
            kind, picks = "one_call", [rng.choice(offered)]
        else:
            kind, picks = "two_call", rng.sample(offered, 2)
        calls = [Call(f.name, sample_arguments(f, rng)) for f in picks]
        phrasing = phrasings[0] if len(phrasings) == 1 else rng.choice(phrasings)  # plain draws stay as they were
        query = render_query(calls, phrasing, rng)
        if query is None or split_of(query) != "train":
            continue
        gold = [GoldCall.from_call(c, tools[c.name]) for c in calls] if kind != "no_call" else []
        out.append(Sample(id=f"{first.id}-turn{len(out) + 1}", tools=first.tools,
                          messages=[{"role": "user", "content": query}], gold=gold, category=kind))
    return out


def fc_examples(n: int, seed: int = 0, turns: int = 3, phrasings: tuple[str, ...] = (PLAIN,),
                kind_weights: tuple[float, float, float] = FC_KIND_WEIGHTS) -> list[dict]:
    """Rows holding ``n`` answers, ``turns`` per conversation (the first turn from the
    generator's kind mix, the others from :func:`_more_turns`). The warm start sees plain
    queries only; a reference model (``benchmarks/reference_fc.py``) sees every phrasing."""
    rng = random.Random(f"fc-warm:{seed}" if phrasings == (PLAIN,) else f"fc-warm:{seed}:{','.join(phrasings)}")
    firsts = generate_samples(-(-n // turns), seed=seed, kinds=KINDS, phrasings=phrasings,
                              kind_weights=kind_weights, id_prefix="fc-warm")
    return [fc_conversation([first, *_more_turns(first, turns - 1, rng, phrasings)]) for first in firsts]


def fc_probe_rows(n: int, seed: int) -> list[dict]:
    """``n`` single-turn plain one-call rows for the decay probe (``SFTSettings.decay_when_exact``);
    pass a seed the training data does not use."""
    return [fc_example(s) for s in generate_samples(n, seed=seed, kinds=("one_call",), phrasings=(PLAIN,),
                                                   id_prefix="fc-probe")]


def query_model_messages(sample: Sample, seed_query: str | None = None, style: str | None = None) -> list[dict]:
    """The query model's prompt for ``sample``: the gold calls, a seed query (default: the
    sample's own) and an optional style; the sample's tools go through the chat template's
    ``tools=``, as for the FC model."""
    calls = [gold.canonical_call() for gold in sample.gold]
    lines = ["Calls:", calls_text(calls) if calls else "(none: no offered tool fits the request)",
             f"Seed: {seed_query if seed_query is not None else sample.query}"]
    if style:
        lines.append(f"Style: {style}")
    return [{"role": "system", "content": QUERY_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def query_examples(n: int, seed: int = 0, styled_fraction: float = 0.8) -> list[dict]:
    """Rows pairing a plain seed with the same request phrased in a random kind. Targets are
    kept in the ``train`` split so the query model never learns a held-out query by heart."""
    rng = random.Random(f"query-warm:{seed}")
    seeds = generate_samples(2 * n, seed=seed + 7919, phrasings=(PLAIN,), kind_weights=FC_KIND_WEIGHTS,
                             id_prefix="query-warm")
    rows: list[dict] = []
    for sample in seeds:
        if len(rows) == n:
            break
        style = rng.choice(PHRASINGS)
        target = next((q for q in (rephrase(sample, style, rng) for _ in range(4))
                       if q is not None and split_of(q) == "train"), None)
        if target is None:
            continue
        shown_style = style if rng.random() < styled_fraction else None
        rows.append({"prompt": query_model_messages(sample, style=shown_style),
                     "completion": [{"role": "assistant", "content": target}],
                     "tools": _tools_json(sample.tools), "style": style})
    return rows


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
