"""LoRA through PEFT: training only the adapter, saving it, loading it everywhere, merging it."""

import dataclasses
import json

import pytest
import torch
from distributed_worker import SilentFCModel
from safetensors.torch import load_file

from toolduel.checkpoints import (
    ADAPTER_CONFIG,
    export_merged,
    is_adapter,
    load_causal_lm,
)
from toolduel.config import ConfigError
from toolduel.duel.config import GameConfig
from toolduel.referee.outcome import AttackOutcome
from toolduel.referee.rewards import QueryReward, QueryRewardSettings
from toolduel.referee.validity import ValidityVerdict
from toolduel.world.tiny_models import build_qwen2
from toolduel.training.arguments import lora_config, trainable_model
from toolduel.world.generator import generate_samples

# float32 throughout: these tests compare logits to 1e-5 (bf16 autocast would change them in the third digit)
LORA = dict(fc_lora=True, query_lora=True, lora_rank=4, lora_alpha=8, lora_dropout=0.0, autocast=False)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny_qwen2, tiny_tokenizer):
    path = tmp_path_factory.mktemp("base") / "model"
    tiny_qwen2.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory, base_dir):
    """One LoRA SFT defence on four world samples: (the trained PeftModel, its saved folder)."""
    from toolduel.duel.defend import defend

    out = tmp_path_factory.mktemp("sft")
    config = GameConfig(**LORA, defend_batch_size=4, defend_epochs=2.0, defend_learning_rate=5e-2)
    samples = generate_samples(4, seed=1, kinds=("one_call",), id_prefix="lora")
    model = defend(config, base_dir, samples, out, save_to=out / "fc_model")
    return model, out / "fc_model"


def _logits(model, tokens=(5, 17, 42, 99, 7, 3)):
    with torch.no_grad():
        return model.eval()(torch.tensor([list(tokens)])).logits  # [1, L, V]


def test_lora_settings_become_a_peft_config():
    config = lora_config(GameConfig(lora_rank=8, lora_alpha=16, lora_target_modules="q_proj, v_proj"), True)
    assert (config.r, config.lora_alpha, set(config.target_modules)) == (8, 16, {"q_proj", "v_proj"})
    assert lora_config(GameConfig(fc_lora=True), False) is None  # a player without LoRA trains in full
    assert lora_config(GameConfig(query_lora=True), True).target_modules == "all-linear"


@pytest.mark.parametrize("settings, message", [
    ({"lora_rank": 0}, "lora_rank and lora_alpha must be at least 1"),
    ({"lora_dropout": 1.0}, "lora_dropout must be in"),
    ({"lora_target_modules": "q_proj,lm_head"}, "without lm_head"),
    ({"dtype": "float16"}, "dtype must be float32 or bfloat16"),
])
def test_bad_lora_settings_say_how_to_fix_them(settings, message):
    with pytest.raises(ConfigError, match=message):
        GameConfig(**settings)


def test_sft_defence_trains_only_the_adapter(sft_adapter, tiny_qwen2):
    model, folder = sft_adapter
    original = dict(tiny_qwen2.named_parameters())
    lora_b = {name: p for name, p in model.named_parameters() if "lora_B" in name}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())  # B starts at zero: it moved
    for name, parameter in model.named_parameters():
        if "lora_" not in name:  # base_model.model.<name> wraps the original parameter
            plain = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(parameter, original[plain]), name
    assert is_adapter(folder) and not (folder / "model.safetensors").exists()
    saved = load_file(folder / "adapter_model.safetensors")
    assert saved and all("lora_A" in key or "lora_B" in key for key in saved)  # only the adapter on disk
    assert (folder / "tokenizer_config.json").exists()


def test_grpo_attack_trains_only_the_adapter_and_continues_it_next_round(tmp_path, base_dir, monkeypatch):
    from toolduel.duel.attack import run_attack
    from toolduel.referee import outcome

    # The tiny random query model writes no valid query; let validity follow the query's parity so
    # that rewards differ within a group (valid and unanswered: 1; invalid: -1) and GRPO learns.
    monkeypatch.setattr(outcome, "check_query", lambda query, sample, lexicon=None: ValidityVerdict(
        valid=len(query) % 2 == 0, reasons=[] if len(query) % 2 == 0 else ["test: odd length"]))
    config = GameConfig(**LORA, attack_steps=1, attack_prompts_per_step=2, num_generations=4, max_query_tokens=8,
                        fc_samples=1, solvability_floor=False, invalid_penalty=-1.0,
                        attack_learning_rate=5e-2)
    seeds = generate_samples(2, seed=2, kinds=("one_call",), id_prefix="attack")
    first = run_attack(config, seeds, SilentFCModel(), base_dir, tmp_path / "round_1", progress=False,
                       on_log=lambda message: None)
    assert 0 < first.steps[0]["validity_rate"] < 1  # both kinds of reward in the batch: a real gradient
    weights = load_file(first.query_path / "adapter_model.safetensors")
    assert all("lora_A" in key or "lora_B" in key for key in weights)
    base = json.loads((first.query_path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    assert base == str(base_dir.resolve())
    gentle = dataclasses.replace(config, attack_learning_rate=1e-5)
    second = run_attack(gentle, seeds, SilentFCModel(), first.query_path, tmp_path / "round_2", progress=False,
                        on_log=lambda message: None)
    assert json.loads((second.query_path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == base
    continued = load_file(second.query_path / "adapter_model.safetensors")
    # The same adapter trained a little further (a fresh one would have new random A and zero B).
    assert continued.keys() == weights.keys()
    assert all((continued[key] - weights[key]).abs().max() < 1e-3 for key in weights)


class PaysForText(QueryReward):
    """A query reward that pays every query with text in it (1) and nothing for an empty one (0),
    or the other way round (``inverted``): no FC model, no referee, only the reward GRPO sees."""

    def __init__(self, inverted: bool = False):
        super().__init__(SilentFCModel(), k=1, settings=QueryRewardSettings(floor=False))
        self.inverted = inverted

    def outcomes(self, samples, queries, trainer_state=None):
        return [AttackOutcome(q, valid=True, reasons=[], fc_success=float(bool(q) == self.inverted)) for q in queries]


@pytest.fixture(scope="module")
def newline_first_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny model whose scaled embeddings make it repeat the prompt's last token: asked to
    answer, it starts with a newline about 40% of the time, a query with no text."""
    path = tmp_path_factory.mktemp("newline") / "model"
    model = build_qwen2(tiny_tokenizer, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        intermediate_size=128, seed=0)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(5.0)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _first_token_probability(model_dir, seeds, token_id: int) -> float:
    """The model's mean probability of ``token_id`` as the first token of its query, over the
    seeds' attack prompts (rendered as the attack renders them)."""
    from toolduel.checkpoints import load_tokenizer
    from toolduel.prompts import query_model_messages
    from toolduel.training.grpo import render_prompt_rows

    tokenizer, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    probabilities = []
    for row in render_prompt_rows(tokenizer, seeds, query_model_messages):
        ids = tokenizer(row["prompt"], return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            probabilities.append(model(ids).logits[0, -1].float().softmax(-1)[token_id].item())
    return sum(probabilities) / len(probabilities)


def test_grpo_moves_the_query_model_toward_what_the_reward_pays(tmp_path, newline_first_dir, tiny_tokenizer):
    """One-token queries: the attack's GRPO, paid for a query with text, makes the newline (an
    empty query) rarer; paid for an empty query instead, it does not. A GRPO that learnt nothing,
    or learnt the reward's opposite, fails one of the two."""
    from toolduel.training.grpo import train_query_model

    newline = tiny_tokenizer.convert_tokens_to_ids("Ċ")
    seeds = generate_samples(4, seed=2, kinds=("one_call",), id_prefix="attack")
    config = GameConfig(**LORA, attack_steps=10, attack_prompts_per_step=4, num_generations=8, max_query_tokens=1,
                        fc_samples=1, solvability_floor=False, attack_learning_rate=1e-2)
    before = _first_token_probability(newline_first_dir, seeds, newline)
    assert 0.2 < before < 0.6  # both kinds of query come up in a group of 8: a real gradient
    after = {}
    for inverted in (False, True):
        result = train_query_model(newline_first_dir, seeds, PaysForText(inverted), tmp_path / str(inverted),
                                   attack=config, trainer=config, seed=0, progress=False, on_log=lambda line: None)
        after[inverted] = _first_token_probability(result.query_path, seeds, newline)
        if not inverted:  # the step log reads the rising pay as attack success
            assert result.steps[-1]["attack_success_rate"] > result.steps[0]["attack_success_rate"] + 0.2
    assert after[False] < before / 4  # paid for text: the empty query all but gone
    assert after[True] > before * 0.8  # paid for no text: not pushed away from it


def test_an_adapter_folder_loads_through_every_loader(sft_adapter, base_dir):
    from toolduel.duel.players import load_chat_model
    from toolduel.models.hf import TransformersChatModel

    peft_model, folder = sft_adapter
    expected = _logits(peft_model)
    assert not torch.allclose(expected, _logits(load_causal_lm(base_dir)))  # the adapter does something
    chat = TransformersChatModel.from_pretrained(folder, device="cpu")
    assert torch.allclose(_logits(chat.model), expected, atol=1e-5)
    assert chat.generate([[{"role": "user", "content": "Book a table in Oslo"}]], [[]])[0].meta["completion_tokens"]
    assert torch.allclose(_logits(load_chat_model(folder, GameConfig(autocast=False)).model), expected, atol=1e-5)
    # For a trainer: LoRA on continues the adapter (base frozen); LoRA off trains the merged model in full.
    model, new_config = trainable_model(folder, GameConfig(), lora=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert new_config is None and trainable and all("lora_" in name for name in trainable)
    model, new_config = trainable_model(folder, GameConfig(), lora=False)
    assert new_config is None and not any("lora_" in name for name, _ in model.named_parameters())
    assert torch.allclose(_logits(model), expected, atol=1e-5)
    path, new_config = trainable_model(base_dir, GameConfig(), lora=True)
    assert path == str(base_dir.resolve()) and new_config.r == 16  # a full model: a fresh adapter


def test_merged_export_loads_without_peft_and_matches_base_plus_adapter(sft_adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    peft_model, folder = sft_adapter
    export_merged(folder, tmp_path / "final")
    assert not is_adapter(tmp_path / "final") and (tmp_path / "final" / "tokenizer_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final")  # plain transformers
    assert not any("lora" in name for name in merged.state_dict())
    assert torch.allclose(_logits(merged), _logits(peft_model), atol=1e-5)


def test_an_adapter_whose_base_is_gone_names_the_setting_to_fix(sft_adapter, tmp_path):
    import shutil

    _, folder = sft_adapter
    moved = tmp_path / "adapter"
    shutil.copytree(folder, moved)
    config = json.loads((moved / ADAPTER_CONFIG).read_text())
    (moved / ADAPTER_CONFIG).write_text(json.dumps(config | {"base_model_name_or_path": "/nowhere/base"}))
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        load_causal_lm(moved)


def test_grpo_defence_with_lora_saves_an_adapter(tmp_path, base_dir):
    from peft import PeftModel

    from toolduel.duel.defend import defend

    config = GameConfig(**LORA, defend="grpo", defend_epochs=1.0)
    samples = generate_samples(8, seed=3, kinds=("one_call",), id_prefix="grpo")
    model = defend(config, base_dir, samples, tmp_path, save_to=tmp_path / "fc_model")
    assert isinstance(model, PeftModel) and is_adapter(tmp_path / "fc_model")
    assert json.loads((tmp_path / "fc_model" / ADAPTER_CONFIG).read_text())["r"] == 4
