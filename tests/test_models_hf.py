"""TransformersChatModel on a tiny Qwen2 and BPE tokenizer built in-process (tests/conftest.py)."""

from __future__ import annotations

import copy
import json
import time

import pytest
import torch

from toolduel.models import load_model
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.models.hf import TransformersChatModel
from toolduel.prompts import render_tools_instruction
from toolduel.schema import Tool

WEATHER = Tool("get_weather", "Current weather for a city.", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
# ChatML without any notion of tools: the system-prompt path must carry them.
PLAIN_CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PROMPTS = ["What is the weather in Paris on day 12?", "hi",
           "Book a table in Oslo for 4 people at 19:30, near the harbour, somewhere quiet",
           "Find flights to Lima", "Convert 12 EUR"]
GREEDY = GenerationConfig(max_new_tokens=10)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def chat_model(opinionated_qwen2, tiny_tokenizer):
    return TransformersChatModel.from_objects(opinionated_qwen2, tiny_tokenizer, batch_size=8)


def test_template_path_renders_tools_through_the_chat_template(tiny_qwen2, tiny_tokenizer):
    model = TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer)

    prompt = model.render_prompt(user("Weather in Oslo?"), [WEATHER])

    assert model.tools_in_template and isinstance(model, ChatModel)
    assert "get_weather" in prompt and "Current weather for a city." in prompt
    assert "<tools>" not in prompt  # the template's own format, not the fallback instruction
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "get_weather" not in model.render_prompt(user("Weather in Oslo?"), [])


def test_system_prompt_path_when_the_template_ignores_tools(tiny_qwen2, tiny_tokenizer):
    model = TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer, chat_template=PLAIN_CHATML)
    conversation = [{"role": "system", "content": "Be brief."}, *user("Weather in Oslo?")]

    prompt = model.render_prompt(conversation, [WEATHER])

    assert not model.tools_in_template
    expected_system = "Be brief.\n\n" + render_tools_instruction([WEATHER])
    assert prompt == (f"<|im_start|>system\n{expected_system}<|im_end|>\n"
                      "<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n")
    assert json.dumps(WEATHER.to_openai()) in prompt and "<tool_call>" in prompt
    assert conversation[0]["content"] == "Be brief."  # the caller's messages are untouched
    assert tiny_tokenizer.chat_template != PLAIN_CHATML  # and so is the tokenizer
    forced = TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer, tool_prompt="system")
    assert "<tools>" in forced.render_prompt(user("Weather in Oslo?"), [WEATHER])


def test_left_padding_gives_the_same_greedy_answer_alone_and_in_a_batch(chat_model):
    alone = [chat_model.generate([user(text)], [[WEATHER]], GREEDY)[0].text for text in PROMPTS]

    batched = chat_model.generate([user(text) for text in PROMPTS], [[WEATHER]] * len(PROMPTS), GREEDY)

    assert [g.text for g in batched] == alone
    assert len(set(alone)) == len(alone)  # the answers depend on the prompt: the order is checked too
    lengths = [g.meta["prompt_tokens"] for g in batched]
    assert len(set(lengths)) == len(lengths)  # prompts of different lengths shared a padded batch


def test_batches_and_progress_keep_one_generation_per_conversation_in_order(chat_model, opinionated_qwen2,
                                                                            tiny_tokenizer):
    small_batches = TransformersChatModel.from_objects(opinionated_qwen2, tiny_tokenizer, batch_size=2,
                                                       progress=True)
    conversations = [user(text) for text in PROMPTS]
    tools = [[WEATHER], [], [WEATHER], [], [WEATHER]]

    generations = small_batches.generate(conversations, tools, GREEDY)

    assert [g.text for g in generations] == [g.text for g in chat_model.generate(conversations, tools, GREEDY)]
    assert all(g.error is None and g.meta["completion_tokens"] <= 10 for g in generations)
    assert small_batches.generate([], []) == []
    with pytest.raises(ValueError, match="one tool list per conversation"):
        small_batches.generate(conversations, tools[:2])


def test_sampling_with_a_seed_is_reproducible_and_leaves_the_global_rng_alone(chat_model):
    conversations = [user("Find flights to Lima")] * 4  # k = 4 samples of one prompt
    config = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=123)
    rng_before = torch.get_rng_state()

    first = [g.text for g in chat_model.generate(conversations, [[WEATHER]] * 4, config)]
    second = [g.text for g in chat_model.generate(conversations, [[WEATHER]] * 4, config)]
    other_seed = [g.text for g in chat_model.generate(conversations, [[WEATHER]] * 4,
                                                      GenerationConfig(max_new_tokens=8, temperature=1.0, seed=124))]

    assert first == second and first != other_seed
    assert len(set(first)) > 1  # the k samples differ from one another
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_generation_does_not_modify_the_model_or_tokenizer(opinionated_qwen2, tiny_tokenizer):
    padding_side, pad_token = tiny_tokenizer.padding_side, tiny_tokenizer.pad_token
    opinionated_qwen2.train()
    try:
        TransformersChatModel.from_objects(opinionated_qwen2, tiny_tokenizer).generate([user("hi")], [[]], GREEDY)
        assert opinionated_qwen2.training  # eval only while generating
    finally:
        opinionated_qwen2.eval()
    assert (tiny_tokenizer.padding_side, tiny_tokenizer.pad_token) == (padding_side, pad_token)


@pytest.mark.parametrize("tags_are_special", [False, True])
def test_decoding_keeps_tool_call_tags_and_drops_other_special_tokens(tiny_qwen2, tiny_tokenizer,
                                                                      tags_are_special):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    if tags_are_special:  # as in tokenizers that list them among the additional special tokens
        tokenizer.add_special_tokens({"extra_special_tokens": ["<tool_call>", "</tool_call>"]})
    model = TransformersChatModel.from_objects(tiny_qwen2, tokenizer)
    answer = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    ids = tokenizer.encode(answer + "<|im_end|><|endoftext|><|endoftext|>", add_special_tokens=False)
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in ids  # one token, not "<", "tool", ...

    text, finish_reason, count = model.decode_new_tokens(ids)

    assert (text, finish_reason, count) == (answer, "stop", len(ids) - 2)
    # A sequence cut by max_new_tokens: no stop token, stray special tokens dropped.
    cut_short = tokenizer.encode("<|im_start|>ok", add_special_tokens=False)
    assert model.decode_new_tokens(cut_short) == ("ok", "length", len(cut_short))
    if tags_are_special:  # what the naive decode would have done
        assert "<tool_call>" not in tokenizer.decode(ids, skip_special_tokens=True)


def test_save_pretrained_then_load_by_path_answers_the_same(chat_model, opinionated_qwen2, tiny_tokenizer,
                                                            tmp_path):
    opinionated_qwen2.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    conversations = [user(text) for text in PROMPTS[:3]]

    loaded = load_model({"backend": "transformers", "path": str(tmp_path), "device": "cpu", "dtype": "float32",
                         "batch_size": 2})

    assert isinstance(loaded, TransformersChatModel) and loaded.name == str(tmp_path)
    assert loaded.tools_in_template
    assert loaded.render_prompt(conversations[0], [WEATHER]) == chat_model.render_prompt(conversations[0], [WEATHER])
    expected = [g.text for g in chat_model.generate(conversations, [[WEATHER]] * 3, GREEDY)]
    assert [g.text for g in loaded.generate(conversations, [[WEATHER]] * 3, GREEDY)] == expected


def test_settings_are_checked(tiny_qwen2, tiny_tokenizer):
    with pytest.raises(ValueError, match="tool_prompt"):
        TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer, tool_prompt="json")
    with pytest.raises(ValueError, match="batch_size"):
        TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer, batch_size=0)
    no_template = copy.deepcopy(tiny_tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        TransformersChatModel.from_objects(tiny_qwen2, no_template)
    with pytest.raises(ValueError, match="needs 'path'"):
        load_model({"backend": "transformers"})


def test_a_prompt_longer_than_the_models_context_fails_alone_and_at_once(chat_model):
    """A 1 MB record would run for minutes on a 1,024-position model: it is recorded as failed
    with its reason, and the other prompts of the batch are answered."""
    huge = [{"role": "user", "content": "word " * 200_000}]
    started = time.monotonic()
    short, long = chat_model.generate([[{"role": "user", "content": "hi"}], huge], [[], []],
                                      GenerationConfig(max_new_tokens=4))
    assert short.error is None and long.text == ""
    assert long.error.startswith("the prompt is") and "more than the model's context of 1,024" in long.error
    assert time.monotonic() - started < 60
