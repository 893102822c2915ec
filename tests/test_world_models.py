"""The world's warm starts: tiny models (tokenizer, Qwen2 config), warm-start data, the cached test build,
and the SFT trainer they train with."""

from __future__ import annotations

import json

import pytest
import torch

from toolduel.parsing import parse_calls
from toolduel.prompts import NO_CALL_REPLY, fc_example, query_model_messages
from toolduel.world.generator import generate_samples
from toolduel.world.tiny_models import (
    QWEN2_PRETOKENIZE_REGEX,
    build_qwen2,
    train_tokenizer,
)
from toolduel.world.training_data import fc_examples, query_examples

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather_forecast", "description": "Daily forecast",
    "parameters": {"type": "object", "required": ["city", "days"], "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "cities": {"type": "array", "items": {"type": "string"}},
        "hourly": {"type": "boolean", "default": False}}}}}


@pytest.fixture(scope="module")
def world_tokenizer():
    texts = [s.query for s in generate_samples(300, seed=1)] + ['{"name": "x", "arguments": {}}'] * 5
    return train_tokenizer(texts, vocab_size=400)


@pytest.fixture(scope="module")
def test_build(tmp_path_factory):
    import os

    from toolduel.training.warm_start import ensure_world_models

    old = os.environ.get("TOOLDUEL_CACHE")
    os.environ["TOOLDUEL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield ensure_world_models("test", progress=False)
    finally:
        if old is None:
            del os.environ["TOOLDUEL_CACHE"]
        else:
            os.environ["TOOLDUEL_CACHE"] = old


def test_tokenizer_splits_digits_and_keeps_call_tags(world_tokenizer):
    assert world_tokenizer.tokenize("1234") == ["1", "2", "3", "4"]
    ids = world_tokenizer("<tool_call>\n{}\n</tool_call>")["input_ids"]
    assert world_tokenizer.convert_tokens_to_ids("<tool_call>") == ids[0]
    # the tags survive a decode that drops special tokens
    assert "<tool_call>" in world_tokenizer.decode(ids, skip_special_tokens=True)
    hostile = "naïve 😀 \x00 " + "9" * 50
    assert world_tokenizer.decode(world_tokenizer(hostile)["input_ids"]) == hostile


def test_tokenizer_matches_transformers_qwen2_pretokenizer():
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    assert QWEN2_PRETOKENIZE_REGEX == PRETOKENIZE_REGEX


def test_tokenizer_rejects_a_vocab_below_the_byte_alphabet():
    with pytest.raises(ValueError, match="at least 300"):
        train_tokenizer(["abc"], vocab_size=100)


def test_chat_template_renders_tools_compactly(world_tokenizer):
    messages = [{"role": "user", "content": "Forecast for Oslo, 3 days"}]
    text = world_tokenizer.apply_chat_template(messages, tools=[WEATHER_TOOL], add_generation_prompt=True,
                                               tokenize=False)
    assert ("get_weather_forecast(city:str, days:int, unit?:celsius|fahrenheit=celsius, cities?:list[str], "
            "hourly?:bool=false) Daily forecast") in text
    assert text.startswith("<|im_start|>system\nTools:\n") and text.endswith("<|im_start|>assistant\n")
    plain = world_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "Tools" not in plain and plain == "<|im_start|>user\nForecast for Oslo, 3 days<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_renders_assistant_tool_calls_as_tags(world_tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}},
        {"type": "function", "function": {"name": "g", "arguments": "{\"b\": 2}"}}]}]
    text = world_tokenizer.apply_chat_template(messages, tokenize=False)
    assert [c.to_dict() for c in parse_calls(text.split("assistant\n", 1)[1]).calls] == [
        {"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {"b": 2}}]


def test_build_qwen2_is_about_1m_parameters_at_the_defaults():
    tokenizer = train_tokenizer(["a b c 1 2 3"] * 10, vocab_size=1536)
    model = build_qwen2(tokenizer)
    assert model.config.vocab_size == len(tokenizer)
    assert 0.5e6 < model.num_parameters() < 1.5e6
    with pytest.raises(ValueError, match="num_heads"):
        build_qwen2(tokenizer, hidden_size=130, num_heads=4)


def test_fc_rows_target_format_calls_or_a_sentence():
    for sample in generate_samples(60, seed=2, phrasings=("plain",)):
        row = fc_example(sample)
        assert row["messages"][:-1] == sample.messages and row["messages"][-1]["role"] == "assistant"
        target = row["messages"][-1]["content"]
        assert json.loads(row["tools"])[0]["type"] == "function"
        if sample.gold:
            calls = parse_calls(target).calls
            assert [c.name for c in calls] == [g.name for g in sample.gold]
        else:
            assert target == NO_CALL_REPLY


def test_fc_conversations_share_one_tool_list_and_stay_in_the_train_split():
    from toolduel.world.generator import split_of

    rows = fc_examples(30, seed=4, turns=3)
    assert len(rows) == 10
    for row in rows:
        tool_names = {t["function"]["name"] for t in json.loads(row["tools"])}
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(users) == len(answers) == 3
        assert all(split_of(q) == "train" for q in users)
        for answer in answers:  # every call is to an offered tool; otherwise the no-call reply
            assert answer == NO_CALL_REPLY or {c.name for c in parse_calls(answer).calls} <= tool_names
    assert fc_examples(30, seed=4) == rows


def test_fc_rows_of_every_phrasing_for_a_reference_model_stay_in_the_train_split():
    from toolduel.world.generator import split_of
    from toolduel.world.phrasing import PHRASINGS

    plain = {m["content"] for row in fc_examples(300, seed=4) for m in row["messages"] if m["role"] == "user"}
    rows = fc_examples(300, seed=4, phrasings=PHRASINGS, kind_weights=(0.3, 0.2, 0.5))
    users = [m["content"] for row in rows for m in row["messages"] if m["role"] == "user"]
    answers = [m["content"] for row in rows for m in row["messages"] if m["role"] == "assistant"]
    assert all(split_of(q) == "train" for q in users)
    assert len(set(users) - plain) > 150  # most are phrased otherwise (a plain rendering is one of eight)
    firsts = [next(m["content"] for m in row["messages"] if m["role"] == "assistant") for row in rows]
    assert firsts.count(NO_CALL_REPLY) > len(firsts) * 0.35  # the first turns' no-call share was raised
    assert NO_CALL_REPLY in answers[1::3]  # later turns keep their own share


def test_fc_phrasings_name_the_kinds_an_fc_warm_start_sees():
    import dataclasses

    from toolduel.training.warm_start import BUDGETS, training_rows

    budget = dataclasses.replace(BUDGETS["test"], fc_answers=30)
    assert training_rows(budget)["fc"] == fc_examples(30, seed=budget.seed, turns=budget.fc_turns)  # as before
    some = dataclasses.replace(budget, fc_phrasings="plain,chatty,terse")
    assert training_rows(some)["fc"] == fc_examples(30, seed=budget.seed, turns=budget.fc_turns,
                                                    phrasings=("plain", "chatty", "terse"))
    assert training_rows(some)["fc"] != training_rows(budget)["fc"]
    with pytest.raises(ValueError, match="unknown phrasing .shouting"):
        training_rows(dataclasses.replace(budget, fc_phrasings="plain,shouting"))


def test_query_rows_cover_every_style_and_stay_valid():
    from toolduel.referee.tool_grammar import split_completion
    from toolduel.referee.validity import check_query
    from toolduel.world.generator import split_of
    from toolduel.world.lexicon import world_lexicon
    from toolduel.world.phrasing import COMBINATIONS, PHRASINGS

    rows = query_examples(300, seed=0)
    styles = {r["style"] for r in rows}
    assert set(PHRASINGS) <= styles <= set(PHRASINGS) | set(COMBINATIONS)
    composed = [r["style"] for r in rows if r["style"] in COMBINATIONS]  # about half, most combinations seen
    assert 0.35 < len(composed) / len(rows) < 0.65 and len(set(composed)) > 30
    assert all(split_of(split_completion(r["messages"][-1]["content"])[0]) == "train" for r in rows)
    sample = generate_samples(1, seed=5, kinds=("one_call",), phrasings=("plain",))[0]
    prompt = query_model_messages(sample, style="chatty")
    assert prompt[-1]["content"].endswith("Style: chatty") and sample.query in prompt[-1]["content"]
    assert check_query(sample.query, sample, world_lexicon()).valid


def test_a_quarter_of_the_query_rows_ask_for_a_tool_move_and_write_its_edits():
    from toolduel.referee.tool_grammar import parse_edit, split_completion

    rows, plain = query_examples(300, seed=0), query_examples(300, seed=0, edits_fraction=0.0)
    edited = [(row, other) for row, other in zip(rows, plain, strict=True) if row != other]
    assert 0.15 < len(edited) / len(rows) < 0.35
    for row, other in edited:  # the same request, now asked for a move, and followed by its edits
        request, lines = split_completion(row["messages"][-1]["content"])
        assert request == other["messages"][-1]["content"] and lines
        assert "Tool move: " in row["messages"][1]["content"] and "Tool edits:" in row["messages"][0]["content"]
        assert all(parse_edit(line) for line in lines)


def test_test_budget_build_gives_loadable_hf_checkpoints(test_build):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for path in (test_build.fc_path, test_build.query_path):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.config.model_type == "qwen2" and tokenizer.tokenize("42") == ["4", "2"]
        ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL],
                                            add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out.shape[1] > ids["input_ids"].shape[1]
    assert test_build.info["timings"]["total_s"] < 60


def test_warm_start_changed_every_parameter(test_build):
    from transformers import AutoModelForCausalLM

    from toolduel.training.warm_start import BUDGETS, base_player, training_rows

    budget = BUDGETS["test"]
    fresh, _ = base_player(budget, "fc", training_rows(budget))  # where the FC warm start began
    trained = AutoModelForCausalLM.from_pretrained(test_build.fc_path)
    unchanged = [name for (name, before), after in zip(fresh.named_parameters(), trained.parameters())
                 if torch.equal(before, after)]
    assert unchanged == []


def test_second_call_hits_the_cache(test_build, monkeypatch):
    from toolduel.training import warm_start as build

    monkeypatch.setattr(build, "build_world_models", lambda *a, **k: pytest.fail("rebuilt a cached build"))
    again = build.ensure_world_models("test", progress=False)
    assert again.fc_path == test_build.fc_path
    with pytest.raises(ValueError, match="default"):
        build.ensure_world_models("huge")


def test_cache_key_follows_the_budget():
    import dataclasses

    from toolduel.training.warm_start import BUDGETS, cache_key

    test = BUDGETS["test"]
    assert cache_key(test) == cache_key(dataclasses.replace(test))
    assert cache_key(test) != cache_key(dataclasses.replace(test, fc_answers=49))


def test_query_checkpoint_leaves_the_tools_out(test_build):
    """The query model reads the gold calls and the seed; its template leaves the tools out, while
    the FC model's template renders them as signatures."""
    from transformers import AutoTokenizer

    from toolduel.prompts import ChatRenderer
    from toolduel.schema import Tool

    rendered = {role: AutoTokenizer.from_pretrained(path).apply_chat_template(
        [{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tokenize=False)
        for role, path in (("fc", test_build.fc_path), ("query", test_build.query_path))}
    assert "get_weather_forecast(city:str, days:int" in rendered["fc"] and "Daily forecast" in rendered["fc"]
    assert "get_weather_forecast" not in rendered["query"] and rendered["query"].startswith("<|im_start|>user\nhi")
    query_renderer = ChatRenderer(AutoTokenizer.from_pretrained(test_build.query_path))
    assert query_renderer.tools_in_template  # so the tools reach the template, which drops them
    assert "get_weather" not in query_renderer.prompt([{"role": "user", "content": "hi"}],
                                                      [Tool.from_openai(WEATHER_TOOL)])


def test_labelled_positions_loss_matches_trl(world_tokenizer, tmp_path):
    """On a CPU the warm starts score only answer positions; loss and gradients are TRL's own."""
    import trl
    from datasets import Dataset

    from toolduel.training.sft import _sft_trainer_class, encode_rows

    model = build_qwen2(world_tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64)
    rows = fc_examples(12, seed=2, turns=3)
    # bf16 off: unprepared, TRL's path runs in float32, and ours must too to compare exactly
    config = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none",
                           activation_checkpointing=False, bf16=False)
    dataset = Dataset.from_list(encode_rows(world_tokenizer, rows))
    results, batch = [], None
    for trainer_class in (trl.SFTTrainer, _sft_trainer_class()):
        trainer = trainer_class(model=model, args=config, train_dataset=dataset, processing_class=world_tokenizer)
        batch = batch or next(iter(trainer.get_train_dataloader()))
        assert (batch["labels"] == -100).float().mean() > 0.3  # the prompts carry no loss
        model.train()
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (trl_loss, trl_grads), (our_loss, our_grads) = results
    assert our_loss == pytest.approx(trl_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(trl_grads, our_grads))
