"""What the players see: training renders a row exactly as inference prompts the model."""

from __future__ import annotations

import copy
import json

import pytest

from toolduel.models.hf import TransformersChatModel
from toolduel.prompts import NO_CALL_REPLY, ChatRenderer, fc_conversation, fc_example, fc_target
from toolduel.schema import Sample, Tool
from toolduel.world.generator import generate_samples

# ChatML without tool support, as SmolLM2-Instruct ships it: tools passed to it would be dropped.
PLAIN_CHATML = ("{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(params=["template tools", "system tools"])
def chat_model(request, tiny_qwen2, tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    if request.param == "system tools":
        tokenizer.chat_template = PLAIN_CHATML
    return TransformersChatModel.from_objects(tiny_qwen2, tokenizer)


def test_a_training_row_is_the_inference_prompt_plus_the_answer(chat_model):
    tokenizer = chat_model.tokenizer
    for sample in generate_samples(6, seed=3):
        encoded = ChatRenderer(tokenizer).encode(fc_example(sample)["messages"], sample.tools)
        prompt_ids = tokenizer(chat_model.render_prompt(sample.messages, sample.tools),
                               add_special_tokens=False)["input_ids"]
        ids, learnt = encoded["input_ids"], encoded["assistant_masks"]
        assert ids[:len(prompt_ids)] == prompt_ids and not any(learnt[:len(prompt_ids)])  # the prompt, as asked
        answer = tokenizer.decode([i for i, m in zip(ids, learnt) if m])
        assert answer == fc_target(sample) + "<|im_end|>"  # the answer and the end of the turn, nothing else
        assert tokenizer.decode(ids) == chat_model.renderer.render(fc_example(sample)["messages"], sample.tools)
        if sample.tools:  # a template without tool support gets them in the system message, in training too
            assert sample.tools[0].name in tokenizer.decode(prompt_ids)
    assert chat_model.tools_in_template == (tokenizer.chat_template != PLAIN_CHATML)


def test_every_turn_of_a_conversation_is_learnt_after_the_prompt_of_the_turns_before_it(chat_model):
    tokenizer, renderer = chat_model.tokenizer, chat_model.renderer
    samples = generate_samples(3, seed=4, kinds=("one_call",))
    row = fc_conversation([samples[0], *[Sample(s.id, samples[0].tools, s.messages, s.gold) for s in samples[1:]]])
    tools = [Tool.from_any(t) for t in json.loads(row["tools"])]
    encoded = renderer.encode(row["messages"], tools)
    ids, learnt = encoded["input_ids"], encoded["assistant_masks"]
    starts = [i for i in range(len(ids)) if learnt[i] and (i == 0 or not learnt[i - 1])]
    assert len(starts) == 3
    for turn, start in enumerate(starts):
        before = row["messages"][:2 * turn + 1]
        assert tokenizer.decode(ids[:start]) == renderer.prompt(before, tools)


def test_a_template_that_rewrites_earlier_turns_cannot_be_trained_turn_by_turn(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = "{{ messages | length }}" + PLAIN_CHATML  # the count changes as turns are added
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": NO_CALL_REPLY}]
    with pytest.raises(ValueError, match="renders a conversation's turns differently"):
        ChatRenderer(tokenizer).encode(messages, [])
