"""Run by tests/test_distributed.py under ``accelerate launch`` (two processes on CPU, gloo):
one SFT defence step and one GRPO attack step through toolduel's own functions. Each process
writes what it saw to ``OUT/rank<r>.json``.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py MODEL_DIR OUT
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from toolduel.models.base import Generation


class SilentFCModel:
    """An FC model that never calls a tool: every valid query that asks for a call fools it."""

    name = "silent"

    def generate(self, conversations, tools, config=None):  # noqa: ANN001 - ChatModel protocol
        return [Generation(text="I cannot help.") for _ in conversations]


def checksum(model) -> str:  # noqa: ANN001
    """sha256 of every parameter's bytes, in name order: equal only when bitwise equal."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(model_dir: str, out: str) -> None:
    from toolduel.checkpoints import load_causal_lm
    from toolduel.duel.attack import run_attack
    from toolduel.duel.config import GameConfig
    from toolduel.duel.defend import defend
    from toolduel.training.processes import process_state
    from toolduel.world.generator import generate_samples

    state = process_state()
    out_dir = Path(out)
    config = GameConfig(defend_batch_size=4, defend_epochs=2.0, defend_learning_rate=1e-2, attack_steps=1,
                        attack_prompts_per_step=2, num_generations=2, max_query_tokens=8, fc_samples=1,
                        solvability_floor=False)
    samples = generate_samples(4, seed=0, kinds=("one_call",), id_prefix="dist")
    before = checksum(load_causal_lm(model_dir))
    steps: list[int] = []
    model = defend(config, model_dir, samples, out_dir / "defend", save_to=out_dir / "fc_model",
                   on_step=lambda step, total: steps.append(step))
    attack = run_attack(config, samples[:2], SilentFCModel(), model_dir, out_dir / "attack", progress=False,
                        on_log=lambda message: None)
    record = {"rank": state.process_index, "processes": state.num_processes, "backend": state.backend,
              "defend_steps": steps, "before": before, "after": checksum(model), "attack_steps": attack.steps}
    (out_dir / f"rank{state.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    from toolduel.training.processes import exit_process

    main(sys.argv[1], sys.argv[2])
    exit_process(0)  # as the `toolduel` command ends
