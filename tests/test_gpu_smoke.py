"""benchmarks/gpu_smoke.py on a CPU with --tiny: the script's whole code path (tokenizer, random
Qwen2, generation timing, one round of the real game, the JSON), as CI can run it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from toolduel.run_files import read_jsonl

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_smoke.py"


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what --device cpu sets, undone after the test
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_tiny_smoke_run_plays_a_round_and_reports_speeds(smoke, tmp_path, capfd):
    out, workdir = tmp_path / "smoke.json", tmp_path / "work"

    code = smoke.main(["--device", "cpu", "--tiny", "--out", str(out), "--workdir", str(workdir)])

    stdout = capfd.readouterr().out
    result = json.loads(stdout)  # stdout holds the JSON and nothing else
    assert code == 0 and result["errors"] == {}
    assert json.loads(out.read_text()) == result
    assert result["environment"]["device"] == "cpu" and result["environment"]["torch"] == torch.__version__
    tokenizer, model = result["tokenizer"], result["model"]
    assert tokenizer["vocab_size"] == 400 and model["vocab_size"] == 400
    hidden, layers, inner, kv = 64, 2, 128, 2 * 16  # TINY: 4 heads of 16, 2 of them for keys and values
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + hidden + 2 * kv + 3 * hidden * inner + 2 * hidden
    assert model["parameters"] == 400 * hidden + layers * per_layer + hidden  # tied embeddings, final norm
    assert (model["config"], model["layers"], model["checkpoint_dtype"]) == ("tiny", 2, "float32")

    transformers_speed, vllm_speed = result["generation"]
    assert transformers_speed["backend"] == "transformers" and transformers_speed["prompts"] == 4
    assert 0 < transformers_speed["new_tokens"] <= 4 * 16
    assert transformers_speed["tokens_per_second"] == pytest.approx(
        transformers_speed["new_tokens"] / transformers_speed["seconds"], rel=0.05)
    assert vllm_speed == {"backend": "vllm", "skipped": "vLLM needs a CUDA GPU"}

    game = result["game"]
    assert {"1:attack", "1:harvest", "1:defend", "1:evaluate"} <= set(game["phase_seconds"])
    for trainer in ("grpo", "sft"):  # two steps each, as --tiny asks
        assert game[trainer]["steps"] == 2 and len(game[trainer]["step_seconds"]) == 2
        assert game[trainer]["seconds_per_step"] == game[trainer]["step_seconds"][1] > 0
    assert game["grpo"]["completions_per_step"] == 4 and game["sft"]["examples_per_step"] == 4
    assert game["harvest"]["queries"] == 4
    run_dir = Path(game["run_dir"])
    assert [m["round"] for m in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1]
    assert (run_dir / "final_fc_model" / "config.json").exists()
    assert len(read_jsonl(run_dir / "rounds" / "round_1" / "attack_log.jsonl")) == 2


def test_a_failing_part_is_reported_and_the_rest_still_runs(smoke, monkeypatch, capfd):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(smoke, "time_generation", broken)

    code = smoke.main(["--device", "cpu", "--tiny", "--skip-game"])

    result = json.loads(capfd.readouterr().out)
    assert code == 1
    assert result["errors"] == {"generation:transformers": "RuntimeError: out of memory, say"}
    assert result["generation"][0] == {"backend": "transformers", "error": "RuntimeError: out of memory, say"}
    assert result["model"]["parameters"] > 0 and "game" not in result and result["workdir"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_gpu_is_a_clear_error(smoke, capfd):
    assert smoke.main(["--tiny"]) == 2
    assert "--device cpu --tiny" in capfd.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--attack-steps", "1"], "must be at least 2"),
    (["--num-generations", "1"], "GRPO compares the queries of a group"),
    (["--backends", "sglang"], "unknown backend(s) sglang"),
    (["--vllm-memory", "2"], "share of the GPU's memory"),
])
def test_bad_settings_stop_before_any_work(smoke, capfd, args, message):
    with pytest.raises(SystemExit) as stopped:
        smoke.main(["--device", "cpu", "--tiny", *args])
    assert stopped.value.code == 2 and message in capfd.readouterr().err


def test_a_setup_failure_still_prints_json_naming_it(smoke, monkeypatch, capfd):
    def no_room(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(smoke, "build_random_model", no_room)

    assert smoke.main(["--device", "cpu", "--tiny"]) == 1
    result = json.loads(capfd.readouterr().out)
    assert result["errors"] == {"setup": "OSError: No space left on device"}
    assert result["tokenizer"]["vocab_size"] == 400 and "game" not in result
