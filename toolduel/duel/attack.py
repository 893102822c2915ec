"""Phase 1, attack: GRPO on the query model against the round's frozen FC model.

The query reward is the referee's (:class:`toolduel.referee.rewards.QueryReward`): validity
(the rule check with the world's lexicon, and the judge the config names) times the FC model's
failure rate on the query; the training is :func:`toolduel.training.grpo.train_query_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from toolduel import run_files as files
from toolduel.data import seed_samples
from toolduel.duel.config import GameConfig
from toolduel.specs import specified_seeds
from toolduel.duel.players import fc_player
from toolduel.progress import console
from toolduel.referee.judge import build_judge
from toolduel.referee.rewards import QueryReward
from toolduel.run_files import RunFolder
from toolduel.schema import Sample
from toolduel.training.grpo import AttackResult, train_query_model
from toolduel.training.processes import wait_for_everyone
from toolduel.world.lexicon import world_lexicon


def run_attack(config: GameConfig, seeds: list[Sample], fc_model: Any, query_path: str | Path, out_dir: Path,
               progress: bool = True, on_log: Callable[[str], None] = print, judge: Any = None) -> AttackResult:
    """GRPO on the query model in ``query_path`` against ``fc_model``, one seed per prompt; the
    judge (default: the one the config names) joins the validity gate. Every step's validity
    and attack success go to ``out_dir/attack_log.jsonl``, the query model to ``out_dir/query_model``."""
    reward = QueryReward(fc_model, k=config.fc_samples, settings=config.reward_settings(),
                         generation=config.fc_generation(seed=config.seed), lexicon=world_lexicon(),
                         judge=judge if judge is not None else build_judge(config))
    return train_query_model(query_path, seeds, reward, out_dir, attack=config, trainer=config, seed=config.seed,
                             progress=progress, on_log=on_log)


def phase_attack(run: RunFolder, round_index: int, progress: bool) -> None:
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    if config.attack_steps == 0:  # untargeted augmentation: the query model as it is
        console.print("attack: no steps; the query model is kept as it is")
        run.mark(f"{round_index}:attack")
        return
    seeds = specified_seeds(config, seed_samples(config.seeds, config.attack_steps * config.attack_prompts_per_step,
                                              f"attack-{round_index}", config.seed), f"attack-{round_index}")
    if config.fc_server and not run.writer:  # the main process loads the adapter into the server first
        wait_for_everyone()
        fc_model = fc_player(run, load=False)
    else:
        fc_model = fc_player(run)
        if config.fc_server:
            wait_for_everyone()
    result = run_attack(config, seeds, fc_model, run.path("query_path"), out_dir, progress=progress,
                        on_log=console.print)
    run.mark(f"{round_index}:attack", query_path=result.query_path)
