"""Several processes through ``accelerate launch``: two processes on CPU with the gloo backend,
so that the distributed path (gradients all-reduced, the step log gathered, one writer) runs
in CI on a machine without GPUs."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

from toolduel.run_files import read_jsonl

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="this torch build has no gloo backend, which the two-process CPU test needs")

TESTS = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch`` with two processes on CPU. ``--multi_gpu`` picks torch's launcher;
    with no visible GPU toolduel's process state asks accelerate for CPU processes (gloo)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), *args]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS),
                        "PYTHONFAULTHANDLER": "1"}  # a process that aborts says where
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_two_processes_take_the_same_step(tmp_path, tiny_qwen2, tiny_tokenizer):
    model_dir = tmp_path / "model"
    tiny_qwen2.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    _launch(str(TESTS / "distributed_worker.py"), str(model_dir), str(tmp_path / "out"), cwd=tmp_path)
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["processes"], r["backend"]) for r in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    # SFT defence: 4 examples per step, 2 on each process, 2 epochs -> two steps on both (the first
    # one's learning rate is 0: warmup), the same weights after them.
    assert ranks[0]["defend_steps"] == ranks[1]["defend_steps"] == [1, 2]
    assert ranks[0]["after"] != ranks[0]["before"]  # the step changed the weights
    assert ranks[0]["after"] == ranks[1]["after"]  # and both processes hold the same ones
    # GRPO attack: 2 prompts x 2 queries per step, half on each; the step log counts all four.
    assert ranks[0]["attack_steps"] == ranks[1]["attack_steps"]
    assert [s["queries"] for s in ranks[0]["attack_steps"]] == [4]
    assert [s["queries"] for s in read_jsonl(tmp_path / "out/attack/attack_log.jsonl")] == [4]  # written once
    for name in ("fc_model", "attack/query_model"):
        assert (tmp_path / "out" / name / "config.json").exists()
        assert not (tmp_path / "out" / (name + ".tmp")).exists()


# A process in a group ends without the interpreter's teardown (toolduel.training.processes.exit_process):
# the exit code, the exit handlers and what was printed must all survive that.
IN_A_GROUP = """
import atexit, sys, threading, time
from pathlib import Path
import torch.distributed
from toolduel.training.processes import exit_process

torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
atexit.register(lambda: Path(sys.argv[1]).write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.5), Path(sys.argv[2]).write_text("finished"))).start()
print("work done", end="")  # no newline: still in the buffer
exit_process(3)
"""


def test_a_process_in_a_group_ends_with_its_code_its_threads_its_exit_handlers_and_its_output(tmp_path):
    handler_file, thread_file = tmp_path / "handler", tmp_path / "thread"
    result = subprocess.run([sys.executable, "-c", IN_A_GROUP.format(port=_free_port()), str(handler_file),
                             str(thread_file)], capture_output=True, text=True, timeout=120,
                            env=os.environ | {"PYTHONFAULTHANDLER": "1"})
    assert result.returncode == 3, result.stderr[-3000:]
    assert handler_file.read_text() == "ran"
    assert thread_file.read_text() == "finished"
    assert result.stdout == "work done"


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["eval", "--no-such-flag", "1"], 2)])
def test_the_command_ends_with_the_code_click_gives(argv, code, monkeypatch):
    from toolduel.cli import main

    monkeypatch.setattr(sys, "argv", ["toolduel", *argv])
    with pytest.raises(SystemExit) as ended:  # alone (no group): a plain sys.exit
        main()
    assert ended.value.code == code


@pytest.mark.slow
def test_a_lora_round_under_accelerate_launch_writes_every_file_once(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path_factory.getbasetemp() / "toolduel-cache"))
    run_dir = tmp_path / "run"
    result = _launch(
        "-m", "toolduel.cli", "run", "--out", str(run_dir), "--no-progress", "--rounds", "1",
        "--world-budget", "test", "--attack-steps", "1", "--attack-prompts-per-step", "2", "--num-generations",
        "2", "--harvest-seeds", "6", "--heldout", "world:plain", "--heldout-limit", "3", "--max-query-tokens", "12",
        "--harvest-keep", "valid", "--fc-samples", "2", "--batch-size", "8", "--replay-examples", "8",
        "--defend-batch-size", "4", "--query-lora", "true", "--fc-lora", "true", "--lora-rank", "4",
        cwd=tmp_path)
    assert (result.stdout + result.stderr).count("run folder:") == 1  # one process speaks for all
    state = json.loads((run_dir / "state.json").read_text())
    phases = ["0:players", "0:evaluate", "1:attack", "1:harvest", "1:defend", "1:guard", "1:evaluate", "finish"]
    assert state["completed"] == phases  # each phase marked once, in order
    assert [m["round"] for m in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1]
    assert [s["queries"] for s in read_jsonl(run_dir / "rounds/round_1/attack_log.jsonl")] == [4]
    assert (run_dir / "rounds/round_1/query_model/adapter_config.json").exists()
    assert (run_dir / "rounds/round_1/fc_model/adapter_config.json").exists()
    final = run_dir / "final_fc_model"
    assert (final / "config.json").exists() and not (final / "adapter_config.json").exists()  # merged
    assert not list(run_dir.rglob("*.tmp"))
