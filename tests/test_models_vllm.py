"""The vLLM backend without vLLM: the missing-package message, then our side of the backend
against a stand-in ``vllm`` module (injected into ``sys.modules``) that records what it is given
and answers with token ids. These tests check our code (prompts, sampling settings, order,
stop handling, LoRA), not vLLM."""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import types
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.config import ConfigError
from toolduel.evaluate import read_results
from toolduel.models import (
    VLLM_MISSING,
    close_model,
    load_model,
    load_model_for_generation,
    vllm_available,
)
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.models.hf import TransformersChatModel
from toolduel.models.vllm import VLLMChatModel, lora_rank_limit
from toolduel.run_files import RESULTS
from toolduel.schema import Tool
from toolduel.settings import EvalConfig

WEATHER = Tool("get_weather", "Current weather for a city.", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
PLAIN_CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- the stand-in vllm module ------------------------------------------------------------------


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"SamplingParams({self.kwargs})"


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class Completion:
    token_ids: list[int]
    finish_reason: str = "length"


@dataclass
class RequestOutput:
    outputs: list[Completion]


@dataclass
class FakeLLM:
    """Records its engine settings and every ``generate`` call; ``respond(prompt_ids, index)``
    gives each prompt's answer ids (default: none)."""

    kwargs: dict = field(default_factory=dict)
    calls: list[dict] = field(default_factory=list)
    respond: object = None
    shut_down: bool = False

    def generate(self, prompts, sampling_params, *, use_tqdm=True, lora_request=None):
        self.calls.append({"prompts": prompts, "sampling_params": sampling_params, "use_tqdm": use_tqdm,
                           "lora_request": lora_request})
        respond = self.respond or (lambda ids, index: [])
        return [RequestOutput([Completion(list(respond(p["prompt_token_ids"], i)))]) for i, p in enumerate(prompts)]

    def shutdown(self):
        self.shut_down = True


class Engines(list):
    """The FakeLLM engines started through ``vllm.LLM(...)``; each answers with ``respond``."""

    respond = None


@pytest.fixture
def fake_vllm(monkeypatch):
    """``vllm``, ``vllm.lora`` and ``vllm.lora.request`` as stand-ins; returns the engines started."""
    engines = Engines()

    def start_engine(**kwargs):
        engines.append(FakeLLM(kwargs=kwargs, respond=engines.respond))
        return engines[-1]

    modules = {name: types.ModuleType(name) for name in ("vllm", "vllm.lora", "vllm.lora.request")}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
        monkeypatch.setitem(sys.modules, name, module)
    modules["vllm"].LLM, modules["vllm"].SamplingParams = start_engine, SamplingParams
    modules["vllm.lora.request"].LoRARequest = LoRARequest
    return engines


@pytest.fixture(scope="module")
def checkpoint(tiny_qwen2, tiny_tokenizer, tmp_path_factory):
    """The tiny Qwen2 saved as a checkpoint folder (config, weights, tokenizer, generation config)."""
    path = tmp_path_factory.mktemp("vllm-checkpoint")
    tiny_qwen2.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


# --- without vllm ------------------------------------------------------------------------------


def test_a_missing_vllm_is_one_line_saying_how_to_install_it(monkeypatch, checkpoint):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, wherever the tests run

    with pytest.raises(ConfigError) as caught:
        load_model({"backend": "vllm", "path": str(checkpoint)})

    assert str(caught.value) == VLLM_MISSING and not vllm_available()
    assert str(caught.value) == 'the vllm backend needs vLLM: pip install "toolduel[vllm]" (Linux with a CUDA GPU)'
    result = CliRunner().invoke(app, ["eval", "--model", str(checkpoint), "--backend", "vllm", "--data",
                                      "world:plain", "--limit", "1", "--out", str(checkpoint.parent / "eval"),
                                      "--no-progress"])
    assert result.exit_code == 2 and "pip install" in result.output and "Traceback" not in result.output


def test_importing_the_backend_does_not_import_vllm():
    code = "import sys, toolduel.models, toolduel.models.vllm; print('vllm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- prompts -------------------------------------------------------------------------------------


def test_prompts_are_the_chat_template_with_tools_as_token_ids(fake_vllm, tiny_qwen2, tiny_tokenizer):
    engine = FakeLLM()
    model = VLLMChatModel(engine, tiny_tokenizer)
    reference = TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer)
    conversations = [user("Weather in Oslo?"), [{"role": "system", "content": "Be brief."}, *user("hi")]]

    model.generate(conversations, [[WEATHER], []])

    sent = [p["prompt_token_ids"] for p in engine.calls[0]["prompts"]]
    texts = [tiny_tokenizer.decode(ids, skip_special_tokens=False) for ids in sent]
    assert texts == [reference.render_prompt(c, t) for c, t in zip(conversations, [[WEATHER], []])]
    assert "get_weather" in texts[0] and "Current weather for a city." in texts[0]
    assert texts[0].endswith("<|im_start|>assistant\n") and "get_weather" not in texts[1]
    assert sent[0] == ids_of(tiny_tokenizer, texts[0])  # no BOS or other token added on top
    assert isinstance(model, ChatModel) and model.tools_in_template


def test_a_template_without_tools_gets_them_in_the_system_message(fake_vllm, tiny_tokenizer):
    engine = FakeLLM()
    model = VLLMChatModel(engine, tiny_tokenizer, chat_template=PLAIN_CHATML)

    model.generate([user("Weather in Oslo?")], [[WEATHER]])

    text = tiny_tokenizer.decode(engine.calls[0]["prompts"][0]["prompt_token_ids"], skip_special_tokens=False)
    assert not model.tools_in_template
    assert text.startswith("<|im_start|>system\n") and json.dumps(WEATHER.to_openai()) in text


# --- sampling settings ---------------------------------------------------------------------------


def test_greedy_maps_to_temperature_zero_with_the_stop_ids(fake_vllm, tiny_tokenizer):
    engine = FakeLLM()
    model = VLLMChatModel(engine, tiny_tokenizer, eos_token_ids=(7,))

    model.generate([user("a"), user("b")], [[], []], GenerationConfig(max_new_tokens=12, seed=5))

    params = engine.calls[0]["sampling_params"]
    im_end, end_of_text = (tiny_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
    assert params.kwargs == {"temperature": 0.0, "max_tokens": 12, "stop_token_ids": sorted({7, im_end, end_of_text})}
    assert engine.calls[0]["use_tqdm"] is False and engine.calls[0]["lora_request"] is None


def test_sampling_with_a_seed_gives_each_request_its_own_seed(fake_vllm, tiny_tokenizer):
    engine = FakeLLM()
    model = VLLMChatModel(engine, tiny_tokenizer, top_k=20)
    samples = GenerationConfig(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=100)

    model.generate([user("Find flights to Lima")] * 3, [[WEATHER]] * 3, samples)  # k = 3 samples of one prompt
    model.generate([user("x")], [[]], GenerationConfig(temperature=1.0, seed=None))

    seeded, unseeded = engine.calls[0]["sampling_params"], engine.calls[1]["sampling_params"]
    assert [p.kwargs["seed"] for p in seeded] == [100, 101, 102]  # different samples, the same on every run
    assert all(p.kwargs["temperature"] == 0.7 and p.kwargs["top_p"] == 0.9 and p.kwargs["top_k"] == 20
               and p.kwargs["max_tokens"] == 8 for p in seeded)
    assert "seed" not in unseeded.kwargs and unseeded.kwargs["temperature"] == 1.0
    assert "top_k" not in VLLMChatModel(engine, tiny_tokenizer).sampling_params(samples, [0])[0].kwargs


# --- answers -------------------------------------------------------------------------------------


def test_answers_come_back_in_input_order_cut_at_the_stop_token(fake_vllm, tiny_tokenizer):
    cities = ["Paris", "Oslo", "Lima", "Quito"]
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")

    def respond(prompt_ids, index):  # answers with the city in its own prompt, then chatter after a stop
        prompt = tiny_tokenizer.decode(prompt_ids)
        city = next(c for c in cities if c in prompt)
        if city == "Lima":  # cut by max_new_tokens: no stop token
            return ids_of(tiny_tokenizer, "Lima is")
        return ids_of(tiny_tokenizer, CALL.replace("Paris", city)) + [im_end] + ids_of(tiny_tokenizer, "more")

    engine = FakeLLM(respond=respond)
    model = VLLMChatModel(engine, tiny_tokenizer)

    generations = model.generate([user(f"Weather in {c}?") for c in cities], [[WEATHER]] * 4)

    assert [g.text for g in generations] == [CALL, CALL.replace("Paris", "Oslo"), "Lima is",
                                             CALL.replace("Paris", "Quito")]
    assert [g.meta["finish_reason"] for g in generations] == ["stop", "stop", "length", "stop"]
    assert generations[0].meta["completion_tokens"] == len(ids_of(tiny_tokenizer, CALL)) + 1  # the stop counts
    assert generations[2].meta["completion_tokens"] == len(ids_of(tiny_tokenizer, "Lima is"))
    assert all(g.error is None and g.meta["prompt_tokens"] > 0 for g in generations)
    assert model.generate([], []) == [] and len(engine.calls) == 1  # nothing to do: the engine is not called
    with pytest.raises(ValueError, match="one tool list per conversation"):
        model.generate([user("a")], [])


def test_a_prompt_too_long_for_the_engine_is_an_error_not_a_crash(fake_vllm, tiny_tokenizer):
    engine = FakeLLM(respond=lambda ids, index: ids_of(tiny_tokenizer, "ok"))
    model = VLLMChatModel(engine, tiny_tokenizer, max_model_len=40)
    long_query = "Book a table in Oslo for 4 people at 19:30, near the harbour, somewhere quiet " * 3

    generations = model.generate([user("hi"), user(long_query), user("hey")], [[], [], []],
                                 GenerationConfig(temperature=1.0, seed=0))

    assert [g.text for g in generations] == ["ok", "", "ok"]
    assert "max_model_len" in generations[1].error and generations[1].meta["prompt_tokens"] > 40
    assert len(engine.calls[0]["prompts"]) == 2  # the long one was never sent
    assert [p.kwargs["seed"] for p in engine.calls[0]["sampling_params"]] == [0, 2]  # seeds follow the conversation


def test_close_stops_the_engine_and_later_generation_is_refused(fake_vllm, tiny_tokenizer, tiny_qwen2):
    engine = FakeLLM()
    with VLLMChatModel(engine, tiny_tokenizer, name="fc") as model:
        model.generate([user("hi")], [[]])
    assert engine.shut_down and model.llm is None
    close_model(model)  # twice is fine
    with pytest.raises(RuntimeError, match="fc was closed"):
        model.generate([user("hi")], [[]])
    other = FakeLLM()
    close_model(VLLMChatModel(other, tiny_tokenizer))
    close_model(TransformersChatModel.from_objects(tiny_qwen2, tiny_tokenizer))  # nothing to give back
    assert other.shut_down


# --- loading -------------------------------------------------------------------------------------


def test_load_model_starts_an_engine_with_the_settings_given(fake_vllm, checkpoint):
    model = load_model({"backend": "vllm", "path": str(checkpoint), "gpu_memory_utilization": 0.4,
                        "dtype": "bfloat16", "seed": 3, "max_model_len": 512, "llm_kwargs": {"max_num_seqs": 64}})

    (engine,) = fake_vllm
    assert isinstance(model, VLLMChatModel) and model.name == str(checkpoint) and model.llm is engine
    assert engine.kwargs == {"model": str(checkpoint), "tokenizer": str(checkpoint), "dtype": "bfloat16", "seed": 3,
                             "gpu_memory_utilization": 0.4, "tensor_parallel_size": 1, "trust_remote_code": False,
                             "enforce_eager": False, "max_model_len": 512, "max_num_seqs": 64}
    assert model.max_model_len == 512 and model.lora_request is None
    assert model.tokenizer.eos_token_id in model.stop_ids  # from the checkpoint's generation config too


@pytest.mark.parametrize("spec, message", [
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization is a share"),
    ({"dtype": "int4"}, "dtype must be one of"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size must be at least 1"),
    ({"batch_sise": 8}, "unknown vllm option(s) batch_sise"),
])
def test_bad_vllm_settings_are_one_line_errors(fake_vllm, checkpoint, spec, message):
    with pytest.raises(ConfigError) as caught:
        load_model({"backend": "vllm", "path": str(checkpoint), **spec})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not fake_vllm  # no engine was started


def test_an_adapter_folder_loads_its_base_with_lora(fake_vllm, checkpoint, tiny_tokenizer, tmp_path):
    adapter = tmp_path / "fc_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 12, "base_model_name_or_path": str(checkpoint)}))
    tiny_tokenizer.save_pretrained(adapter)

    model = load_model({"backend": "vllm", "path": str(adapter)})
    model.generate([user("hi"), user("hey")], [[], []])

    (engine,) = fake_vllm
    assert engine.kwargs["model"] == str(checkpoint) and engine.kwargs["tokenizer"] == str(adapter)
    assert (engine.kwargs["enable_lora"], engine.kwargs["max_loras"], engine.kwargs["max_lora_rank"]) == (True, 1, 16)
    assert engine.calls[0]["lora_request"] == LoRARequest("fc_adapter", 1, str(adapter.resolve()))
    assert model.name == str(adapter)


def test_adapter_problems_are_named(fake_vllm, checkpoint, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    with pytest.raises(ConfigError, match="names no base model.*or pass base_model"):
        load_model({"backend": "vllm", "path": str(tmp_path)})
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "/moved/away"}))
    with pytest.raises(ConfigError, match="/moved/away, which does not exist"):
        load_model({"backend": "vllm", "path": str(tmp_path)})
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_model({"backend": "vllm", "path": str(tmp_path), "base_model": str(checkpoint)})
    assert not fake_vllm
    assert [lora_rank_limit({"r": r}) for r in (1, 8, 9, 64, 300)] == [8, 8, 16, 64, 320]
    with pytest.raises(ConfigError, match="merge the adapter"):
        lora_rank_limit({"r": 1024})


def test_load_model_for_generation_picks_the_backend(fake_vllm, checkpoint):
    local = load_model_for_generation(checkpoint, "transformers", batch_size=3, name="FC model", device="cpu")
    fast = load_model_for_generation(checkpoint, "vllm", batch_size=3, progress=True, name="FC model",
                                     gpu_memory_utilization=0.3)

    assert isinstance(local, TransformersChatModel) and local.batch_size == 3 and local.name == "FC model"
    assert isinstance(fast, VLLMChatModel) and fast.progress and fast.name == "FC model"
    assert fake_vllm[0].kwargs["gpu_memory_utilization"] == 0.3
    with pytest.raises(ConfigError, match="generation backend must be one of transformers, vllm"):
        load_model_for_generation(checkpoint, "endpoint")


# --- toolduel eval --backend vllm ---------------------------------------------------------------


def test_eval_with_the_vllm_backend_scores_what_the_engine_answers(fake_vllm, checkpoint, tiny_tokenizer, tmp_path):
    samples = tmp_path / "samples.jsonl"
    weather = {"type": "function", "function": WEATHER.to_openai()["function"]}
    samples.write_text("\n".join(json.dumps({"id": city, "tools": [weather], "messages": [
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": city})}}]}]}) for city in ("Paris", "Oslo")))

    fake_vllm.respond = lambda ids, index: ids_of(tiny_tokenizer, CALL)  # get_weather(Paris), whatever is asked

    result = CliRunner().invoke(app, ["eval", "--data", str(samples), "--model", str(checkpoint), "--backend", "vllm",
                                      "--seed", "4", "--out", str(tmp_path / "eval"), "--no-progress"])

    assert result.exit_code == 0, result.output
    records = read_results(tmp_path / "eval" / RESULTS)
    assert [(r["id"], r["valid"]) for r in records] == [("Paris", True), ("Oslo", False)]
    assert records[1]["error_type"] is not None and records[0]["raw_output"] == CALL
    assert len(fake_vllm) == 1 and fake_vllm[0].kwargs["seed"] == 4


def test_the_eval_backend_setting_is_checked():
    with pytest.raises(ConfigError, match="backend must be transformers or vllm"):
        EvalConfig(backend="sglang")
    with pytest.raises(ConfigError, match="an endpoint generates on its own server"):
        EvalConfig(endpoint="http://127.0.0.1:8000/v1", model="m", backend="vllm")
