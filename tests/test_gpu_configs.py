"""The shipped GPU configs: each loads, and the commands in its first lines agree with its settings."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from toolduel.config import load_config
from toolduel.duel.config import GameConfig
from toolduel.training.arguments import lora_config

CONFIGS = Path(__file__).parent.parent / "configs"
ACCELERATE = sorted(CONFIGS.glob("accelerate-*.yaml"))


def _command(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path.name} must start with a comment giving the command that runs it"
    return shlex.split(first[2:])


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_one_gpu_config_trains_both_players_with_lora_in_bf16():
    path = CONFIGS / "run-1gpu-lora.yaml"
    assert _command(path) == ["toolduel", "run", "--config", "configs/run-1gpu-lora.yaml"]
    config = load_config(GameConfig, path)
    assert (config.query_lora, config.fc_lora, config.dtype, config.gradient_checkpointing) == \
        (True, True, "bfloat16", True)
    assert config.fc_model == config.query_model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert lora_config(config, config.fc_lora).target_modules == "all-linear"
    assert (config.attack_prompts_per_step * config.num_generations) % config.gradient_accumulation_steps == 0
    assert config.defend_batch_size % config.gradient_accumulation_steps == 0


def test_eight_gpu_config_agrees_with_its_launch_line_and_servers():
    path = CONFIGS / "run-8gpu-zero3.yaml"
    command = _command(path)
    assert command[command.index("run") - 2:command.index("run") + 1] == ["-m", "toolduel.cli", "run"]
    assert _option(command, "--config") == "configs/run-8gpu-zero3.yaml"
    accelerate = yaml.safe_load((CONFIGS.parent / _option(command, "--config_file")).read_text())
    training_gpus = command[0].removeprefix("CUDA_VISIBLE_DEVICES=").split(",")
    assert accelerate["num_processes"] == len(training_gpus) == 6
    config = load_config(GameConfig, path)  # loads without vllm installed: it is needed only to run
    assert (config.use_vllm, config.vllm_mode, config.fc_lora, config.dtype) == (True, "server", True, "bfloat16")
    for size in (config.attack_prompts_per_step * config.num_generations, config.defend_batch_size):
        assert size % (accelerate["num_processes"] * config.gradient_accumulation_steps) == 0
    servers = [line[4:] for line in path.read_text().splitlines() if line.startswith("#   ")]
    rollout = next(shlex.split(s) for s in servers if "trl vllm-serve" in s)
    fc = next(shlex.split(s) for s in servers if " vllm serve " in s)
    assert int(_option(rollout, "--port")) == config.vllm_server_port
    assert _option(rollout, "--model") == config.query_model
    assert re.search(rf":{_option(fc, '--port')}/v1$", config.fc_server)
    assert _option(fc, "--served-model-name") == config.fc_server_model and fc[fc.index("serve") + 1] == config.fc_model
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in fc and "--enable-lora" in fc
    assert "--enable-auto-tool-choice" in fc  # vLLM refuses requests that offer tools without it
    assert int(_option(fc, "--max-lora-rank")) >= config.lora_rank
    gpus = {rollout[0].split("=")[1], fc[0].split("=")[1], *training_gpus}
    assert gpus == {str(i) for i in range(8)}  # every GPU used, none twice


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.name for p in ACCELERATE])
def test_accelerate_configs_load_in_accelerate(path):
    from accelerate.commands.config.config_args import ClusterConfig

    command = _command(path)
    assert Path(CONFIGS.parent / _option(command, "--config_file")) == path  # its own launch line
    assert (CONFIGS.parent / _option(command, "--config")).exists()
    cluster = ClusterConfig.from_yaml_file(str(path))  # accelerate's own loader: unknown keys fail here
    assert cluster.distributed_type.value == "DEEPSPEED" and cluster.mixed_precision == "bf16"
    assert cluster.deepspeed_config["zero_stage"] == 3
    assert cluster.deepspeed_config["zero3_save_16bit_model"] is True  # a round's checkpoint loads as one model
    assert cluster.num_machines == 1 and cluster.num_processes >= 1
    run = load_config(GameConfig, CONFIGS.parent / _option(command, "--config"))
    assert run.dtype == "bfloat16"  # the run's weights match the launcher's mixed precision
