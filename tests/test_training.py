"""Trainer settings shared by the attack and the defence: batch shape, precision, vLLM rollouts."""

import importlib.util

import pytest
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.config import ConfigError
from toolduel.duel.config import GameConfig
from toolduel.training.arguments import (
    fast_bf16,
    generation_dtype,
    grpo_settings,
    per_device_batch,
    require_vllm,
    trainer_settings,
    vllm_settings,
)


@pytest.fixture
def no_vllm(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))


@pytest.fixture
def fake_vllm(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))


def test_a_step_batch_is_split_over_accumulation_steps():
    config = GameConfig(gradient_accumulation_steps=4)
    assert per_device_batch(64, config, "defend_batch_size") == 16  # one process here: 64 / (1 x 4)
    with pytest.raises(ConfigError, match=r"defend_batch_size = 30 per step must split evenly over 1 process\(es\) "
                                          r"x 4 gradient accumulation"):
        per_device_batch(30, config, "defend_batch_size")


def test_trainer_settings_follow_dtype_and_memory_settings():
    settings = trainer_settings(GameConfig(dtype="bfloat16", gradient_checkpointing=True, gradient_accumulation_steps=2),
                                seed=0)
    assert (settings["bf16"], settings["activation_checkpointing"], settings["gradient_accumulation_steps"]) == \
        (True, True, 2)
    default = grpo_settings(GameConfig(), seed=0, server_port=8000)
    assert (default["bf16"], default["activation_checkpointing"]) == (fast_bf16(), False)  # autocast where bf16 is fast
    assert default["model_init_kwargs"] == {"dtype": "float32"} and "use_vllm" not in default
    plain = grpo_settings(GameConfig(autocast=False), seed=0, server_port=8000)
    assert plain["bf16"] is False and plain["model_init_kwargs"] == {"dtype": "float32"}
    assert trainer_settings(GameConfig(autocast=True), seed=0)["bf16"] is True  # float32 weights, bf16 autocast
    assert (generation_dtype(GameConfig(autocast=True)), generation_dtype(GameConfig(autocast=False))) == \
        ("bfloat16", "float32")
    with pytest.raises(ConfigError, match="autocast is for float32 weights"):
        GameConfig(autocast=True, dtype="bfloat16")


def test_vllm_server_mode_points_each_trainer_at_its_own_server(fake_vllm, tmp_path):
    from trl import GRPOConfig

    config = GameConfig(use_vllm=True, vllm_mode="server", vllm_server_host="10.0.0.2", vllm_server_port=8100,
                        defend_vllm_server_port=8101)
    query = grpo_settings(config, config.seed, config.vllm_server_port)
    assert {key: query[key] for key in ("use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port")} == \
        {"use_vllm": True, "vllm_mode": "server", "vllm_server_host": "10.0.0.2", "vllm_server_port": 8100}
    assert grpo_settings(config, config.seed, config.defend_vllm_server_port)["vllm_server_port"] == 8101
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2, **query)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_host, args.vllm_server_port) == \
        (True, "server", "10.0.0.2", 8100)  # TRL takes every setting as given
    colocate = vllm_settings(GameConfig(use_vllm=True, vllm_gpu_memory_utilization=0.5), 8000)
    assert colocate == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.5}


def test_missing_vllm_is_a_clear_error_only_when_asked_for(no_vllm):
    require_vllm(GameConfig())  # use_vllm off: vllm is never looked at
    config = GameConfig(use_vllm=True)  # a config naming vllm still loads (the shipped 8-GPU one does)
    with pytest.raises(ConfigError, match=r"pip install 'toolduel\[vllm\]'"):
        vllm_settings(config, 8000)


def test_run_with_use_vllm_but_no_vllm_stops_before_any_work(tmp_path, no_vllm):
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "run"), "--use-vllm", "true", "--no-progress"])
    assert result.exit_code == 2 and "vllm is not installed" in result.output
    assert not (tmp_path / "run" / "rounds").exists()  # nothing was built, loaded or trained


@pytest.mark.parametrize("settings, message", [
    ({"vllm_mode": "remote"}, "vllm_mode must be colocate or server"),
    ({"vllm_server_port": 70000}, "must be a port number"),
    ({"vllm_gpu_memory_utilization": 0.0}, "vllm_gpu_memory_utilization must be in"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps >= 1"),
])
def test_bad_distributed_settings_say_how_to_fix_them(settings, message):
    with pytest.raises(ConfigError, match=message):
        GameConfig(**settings)


def test_the_attack_log_takes_trls_reward_statistics_by_its_own_names():
    from toolduel.training.grpo import trl_step_metrics

    logs = {"loss": 0.1, "reward": 0.25, "reward_std": 0.1, "frac_reward_zero_std": 0.5, "learning_rate": 1e-5}
    assert trl_step_metrics(logs) == {"reward_mean": 0.25, "reward_std": 0.1, "zero_signal_groups": 0.5}
    # a step whose queries were all unpaid (invalid): TRL's mean and spread are NaN, left out
    assert trl_step_metrics({"reward": float("nan"), "reward_std": float("nan"), "frac_reward_zero_std": 0.0}) == \
        {"zero_signal_groups": 0.0}


def test_on_a_cpu_the_fused_lm_head_scores_only_the_completion_with_the_same_log_probs(tiny_qwen2, monkeypatch):
    import copy

    import torch
    import trl.trainer.utils as trl_utils

    from toolduel.training.grpo import score_completions_only

    import trl.kernels.chunked_logprob as kernels

    # TRL's own choice (an earlier GRPO trainer in this process may have made the change already)
    monkeypatch.setattr(trl_utils, "_use_triton", kernels._use_triton)
    model = copy.deepcopy(tiny_qwen2)
    trl_utils.add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    input_ids = torch.randint(3, 100, (3, 20), generator=torch.Generator().manual_seed(0))
    labels = input_ids.clone()
    labels[:, :15] = -100  # a 15-token prompt, a 5-token completion
    scored_rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *args: scored_rows.append(hidden.shape[0]) or apply(hidden, *args))

    def log_probs() -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=input_ids, labels=labels, fused_lm_head=True).log_probs

    every_position = log_probs()
    score_completions_only()
    score_completions_only()  # a second call patches nothing more
    completion_only = log_probs()

    assert scored_rows == [3 * 19, 3 * 5]  # every shifted position, then the completions' alone
    assert torch.allclose(completion_only, every_position, atol=1e-5)
    assert every_position[:, 14:].abs().min() > 0 and (every_position[:, :14] == 0).all()
