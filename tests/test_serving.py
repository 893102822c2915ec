"""`toolduel serve`'s preparation of a checkpoint, without a server (tests/test_real_server.py runs one)."""

from __future__ import annotations

import copy
import json

import pytest

from toolduel.data import load_samples
from toolduel.prompts import ChatRenderer, tools_in_system_template
from toolduel.serving import CHATML_RESPONSE_TEMPLATE, TEXT_RESPONSE_TEMPLATE, serving_checkpoint

# a ChatML template that takes no tools (SmolLM2-135M-Instruct's, in substance)
CHATML_WITHOUT_TOOLS = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture
def plain_chatml(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)  # the session's tokenizer stays as it is
    tokenizer.chat_template = CHATML_WITHOUT_TOOLS
    return tokenizer


def conversations():
    samples = load_samples("world:plain,no_call", limit=2).samples + load_samples("bfcl:multiple", limit=2).samples
    for sample in samples:
        yield sample, list(sample.messages)
        yield sample, [{"role": "system", "content": "Be brief."}, *sample.messages]
        yield sample, [{"role": "system", "content": ""}, *sample.messages]


def test_the_served_template_renders_the_prompt_toolduel_renders(plain_chatml):
    """A server applying the wrapped template to a request's tools shows the model what toolduel
    shows it locally (tools written into the system message), whatever the system message."""
    wrapped = tools_in_system_template(CHATML_WITHOUT_TOOLS)
    local = ChatRenderer(plain_chatml)
    assert not local.tools_in_template
    for sample, messages in conversations():
        served = plain_chatml.apply_chat_template(messages, tools=[t.to_openai() for t in sample.tools],
                                                  chat_template=wrapped, add_generation_prompt=True, tokenize=False)
        assert served == local.prompt(messages, sample.tools), sample.id
    assert "You can call the following tools" in served


def test_tool_calls_come_back_parsed_or_as_text(plain_chatml):
    answer = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
              '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call><|im_end|>')
    ids = plain_chatml(answer, add_special_tokens=False)["input_ids"]
    prefix = "<|im_start|>assistant\n"
    parsed = plain_chatml.parse_response(ids, CHATML_RESPONSE_TEMPLATE, prefix=prefix)
    assert [c["function"] for c in parsed["tool_calls"]] == [{"name": "get_weather", "arguments": {"city": "Paris"}},
                                                            {"name": "ping", "arguments": {}}]
    text = plain_chatml.parse_response(ids, TEXT_RESPONSE_TEMPLATE, prefix=prefix)
    assert text == {"role": "assistant", "content": answer.removesuffix("<|im_end|>")}
    broken = plain_chatml('<tool_call>\n{"name": "f", "arguments": {oops</tool_call><|im_end|>',
                          add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError):  # what the server turns into HTTP 500 under "parsed"
        plain_chatml.parse_response(broken, CHATML_RESPONSE_TEMPLATE, prefix=prefix)
    assert "oops" in plain_chatml.parse_response(broken, TEXT_RESPONSE_TEMPLATE, prefix=prefix)["content"]


def test_a_checkpoint_and_its_adapter_are_made_servable(plain_chatml, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from toolduel.world.tiny_models import build_qwen2

    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path / "cache"))
    model = build_qwen2(plain_chatml, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    base = tmp_path / "base"
    model.save_pretrained(base)
    plain_chatml.save_pretrained(base)
    folder, changes = serving_checkpoint(str(base))
    assert folder.parent == tmp_path / "cache" / "serve" and (folder / "model.safetensors").is_symlink()
    served = AutoTokenizer.from_pretrained(folder)
    assert served.response_template == CHATML_RESPONSE_TEMPLATE and "tools_instruction" in served.chat_template
    assert any("system message" in change for change in changes)
    assert serving_checkpoint(str(base)) == (folder, changes)  # made once
    assert serving_checkpoint(str(base), "text")[0] != folder

    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    plain_chatml.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": str(base)}))
    merged, changes = serving_checkpoint(str(adapter))
    assert changes[0] == "merged the LoRA adapter into its base"
    assert (merged / "config.json").exists() and not (merged / "adapter_config.json").exists()

    with pytest.raises(Exception, match="no model at"):
        serving_checkpoint(str(tmp_path / "missing"))


@pytest.fixture
def restore_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # use_threads sets it for child processes
    yield
    torch.set_num_threads(before)


def test_threads_flag_sets_torch_threads_for_the_process_and_its_children(restore_threads, tmp_path):
    import os

    import torch
    from typer.testing import CliRunner

    from toolduel.cli import app

    result = CliRunner().invoke(app, ["--threads", "1", "world", "sample", "--n", "1", "--out", str(tmp_path / "s")])

    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    result = CliRunner().invoke(app, ["--threads", "0", "world", "sample", "--n", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--threads must be at least 1 (got 0)" in result.output


def test_serve_generates_with_the_threads_it_is_given(restore_threads, monkeypatch):
    import torch
    from typer.testing import CliRunner

    import toolduel.serving
    from toolduel.cli import app

    served = []
    monkeypatch.setattr(toolduel.serving, "serve", lambda folder, **options: served.append(torch.get_num_threads()))
    torch.set_num_threads(2)

    result = CliRunner().invoke(app, ["--threads", "1", "serve", "smollm2", "--port", "8123"])

    assert result.exit_code == 0, result.output
    assert served == [1]  # transformers' server, started in this process, generates on one thread
