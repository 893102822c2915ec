"""ContinuousDecoder on the tiny Qwen2 of tests/conftest.py with large random weights
(``opinionated_qwen2``), so that every prompt gets its own answer."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from toolduel.models import decoding
from toolduel.models.decoding import ContinuousDecoder, GrowingLayer, token_picker

GREEDY = token_picker(0.0, 1.0, 0)


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    texts = ["What is the weather in Paris on day 12?", "hi", "Book a table in Oslo for 4 people at 19:30",
             "Find flights to Lima", "Convert 12 EUR", "Remind me to call Ana tomorrow at nine in the morning"]
    return [tiny_tokenizer(text)["input_ids"] for text in texts]


def decode_all(model, prompts, batch_size, stop_ids, max_new_tokens=12) -> list[list[int]]:
    decoder = ContinuousDecoder(model, batch_size, frozenset(stop_ids), pad_id=0)
    answers: list[list[int] | None] = [None] * len(prompts)
    for position, new_ids in decoder.decode(prompts, max_new_tokens, GREEDY):
        assert answers[position] is None  # each prompt is answered once
        answers[position] = new_ids
    return answers  # type: ignore[return-value]


@pytest.fixture(scope="module")
def early_stops(opinionated_qwen2, prompts):
    """Stop tokens that end some answers after 2-6 tokens and leave others to the 12-token cap:
    rows leave the batch at different steps, and waiting prompts join a running one."""
    never = {opinionated_qwen2.config.vocab_size - 1}
    full = [decode_all(opinionated_qwen2, [p], 1, never)[0] for p in prompts]
    stops = {full[0][3], full[2][5], full[4][1]}
    return stops


def test_rows_that_stop_leave_and_waiting_prompts_join_with_the_answers_each_gets_alone(
        opinionated_qwen2, prompts, early_stops):
    alone = [decode_all(opinionated_qwen2, [p], 1, early_stops)[0] for p in prompts]

    together = decode_all(opinionated_qwen2, prompts, 2, early_stops)

    assert together == alone
    lengths = [len(answer) for answer in alone]
    assert min(lengths) < 12 and max(lengths) == 12  # some rows stopped early, some ran to the cap
    assert all(answer[-1] in early_stops for answer in alone if len(answer) < 12)  # ended at a stop
    assert len({len(p) for p in prompts}) == len(prompts)  # joining rows had other widths: padding was merged


def test_answers_come_back_as_they_end_not_in_input_order(opinionated_qwen2, prompts, early_stops):
    decoder = ContinuousDecoder(opinionated_qwen2, len(prompts), frozenset(early_stops), pad_id=0)

    order = [position for position, _ in decoder.decode(prompts, 12, GREEDY)]

    assert sorted(order) == list(range(len(prompts))) and order != sorted(order)


def test_a_cache_that_cannot_be_padded_decodes_in_waves_with_the_same_answers(
        opinionated_qwen2, prompts, early_stops, monkeypatch):
    expected = decode_all(opinionated_qwen2, prompts, 2, early_stops)
    widths = []

    def plain_cache(config):
        widths.append(None)
        return DynamicCache(config=config), False

    monkeypatch.setattr(decoding, "growing_cache", plain_cache)

    assert decode_all(opinionated_qwen2, prompts, 2, early_stops) == expected
    assert len(widths) == 3  # three waves of two rows: no prompt joined a running batch


def test_a_growing_layer_holds_what_a_dynamic_layer_holds_through_cuts():
    generator = torch.Generator().manual_seed(0)
    growing, dynamic = GrowingLayer(), DynamicLayer()
    batch = 3
    for step, length in enumerate([5, 1, 1, 70, 1]):  # 70: past the headroom, a new buffer
        keys, values = (torch.randn(batch, 2, length, 4, generator=generator) for _ in range(2))
        for layer in (growing, dynamic):
            layer.update(keys, values)
        if step == 2:  # a cut as the decoder makes one: rows 0 and 2 stay, the first column goes
            batch = 2
            for layer in (growing, dynamic):
                layer.batch_select_indices(torch.tensor([0, 2]))
                layer.keys, layer.values = layer.keys[:, :, 1:], layer.values[:, :, 1:]
        assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)
    assert growing.keys.shape == (2, 2, 5 + 1 + 1 - 1 + 70 + 1, 4)


def test_growing_layer_writes_in_place_while_it_has_room():
    layer = GrowingLayer()
    layer.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    head = layer.keys.data_ptr()

    layer.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))

    assert layer.keys.data_ptr() == head  # no copy of the cache for a decode step
    assert layer.keys[0, 0, :, 0].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_identical_prompts_are_prefilled_once_and_answered_each(opinionated_qwen2, prompts, early_stops):
    alone = [decode_all(opinionated_qwen2, [p], 1, early_stops)[0] for p in prompts[:2]]
    shapes = []
    hook = opinionated_qwen2.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        answers = decode_all(opinionated_qwen2, [prompts[0], prompts[1], prompts[0], prompts[0]], 4, early_stops)
    finally:
        hook.remove()

    assert answers == [alone[0], alone[1], alone[0], alone[0]]
    assert shapes[0] == (2, max(len(prompts[0]), len(prompts[1])))  # two distinct prompts in the prefill
    assert shapes[1][0] == 4  # and four rows decoding


def test_samples_of_one_prompt_differ_after_a_shared_prefill(opinionated_qwen2, prompts):
    decoder = ContinuousDecoder(opinionated_qwen2, 8, frozenset({opinionated_qwen2.config.vocab_size - 1}), pad_id=0)
    torch.manual_seed(0)

    answers = [new for _, new in decoder.decode([prompts[3]] * 4, 8, token_picker(1.0, 1.0, 0))]

    assert len({tuple(a) for a in answers}) > 1
