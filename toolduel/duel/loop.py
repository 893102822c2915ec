"""The duel's rounds (``toolduel run``): round 0's players and evaluation, then per round attack,
harvest, defend and evaluate, then the final FC model, the pool as a dataset, and the report.

Every phase writes its results into the run folder (see :mod:`toolduel.run_files`) before it
is marked done in ``state.json``, and files that several phases share (``pool.jsonl``,
``metrics.jsonl``) are rebuilt atomically from per-round files. A run killed at any moment,
``kill -9`` included, resumes from the last completed phase without losing or duplicating a
pool record.

Under ``accelerate launch`` every process plays this loop. The phases that train (attack,
defend) run on all processes, each on its share of the batch; the others (the round-0
players, harvest, evaluation, the final export) run on the main process while the others wait
until it marks the phase done in ``state.json``. Only the main process writes run files.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from toolduel import run_files as files
from toolduel.checkpoints import export_merged
from toolduel.config import ConfigError, load_config, to_yaml
from toolduel.data import DataError, named_sets, overlaps
from toolduel.duel.attack import phase_attack
from toolduel.duel.config import GameConfig
from toolduel.duel.defend import phase_defend
from toolduel.duel.evaluate import phase_evaluate, print_round, rebuild_metrics
from toolduel.duel.guard import guard_verdict, phase_guard
from toolduel.duel.harvest import phase_harvest, rebuild_pool
from toolduel.duel.players import require_generation_backend, start_players
from toolduel.progress import console
from toolduel.run_files import RunFolder
from toolduel.training.arguments import require_vllm
from toolduel.training.processes import between_phases, is_main_process, share_from_main

RUN_STATE = {"fc_path": None, "query_path": None}  # the current players' checkpoints, besides the phases done


def _open(folder: Path, config: GameConfig) -> RunFolder:
    writer = is_main_process()
    if not writer:  # one process speaks for all
        console.quiet = True
    return RunFolder(folder, config, defaults=RUN_STATE, writer=writer)


def check_no_overlap(config: GameConfig) -> None:
    """A :class:`ConfigError` naming the shared samples where the seeds, and so the pool and the
    replay the FC model trains on, overlap the sets it is evaluated on (unless ``allow_overlap``)."""
    if config.allow_overlap:
        return
    evaluated = named_sets(config.heldout, config.heldout_limit) | named_sets(config.extra_eval,
                                                                              config.extra_eval_limit)
    shared = overlaps(config.seeds, evaluated)
    if shared:
        raise ConfigError(f"seeds {config.seeds} share samples with the evaluation, which the FC model would then "
                          f"train on: {'; '.join(shared)}; use other seeds, or allow_overlap true to go on anyway")


def start_run(config: GameConfig) -> RunFolder:
    """A new run folder. With several processes the main one names and creates it (the default
    name is a timestamp, which the processes would not agree on) and tells the others."""
    folder, error = None, None
    if is_main_process():
        folder = Path(config.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            require_vllm(config)  # found missing before a run folder is written
            require_generation_backend(config)
            check_no_overlap(config)
            RunFolder.create(folder, to_yaml(dataclasses.replace(config, out=str(folder))), "a run")
        except (ConfigError, DataError) as err:
            error = str(err)
    folder, error = share_from_main((folder, error))
    if error:
        raise ConfigError(error)
    return _open(Path(folder), dataclasses.replace(config, out=str(folder)))


def resume_run(folder: str | Path) -> RunFolder:
    folder = Path(folder)
    if not (folder / files.CONFIG).exists():
        raise ConfigError(f"{folder} holds no run to resume ({files.CONFIG} is missing)")
    return _open(folder, load_config(GameConfig, folder / files.CONFIG))


def finish(run: RunFolder) -> None:
    """The final FC model (a full checkpoint: a LoRA adapter is merged into its base), the pool
    as a Hugging Face dataset, and the report."""
    export_merged(run.path("fc_path"), run.dir / files.FINAL_FC_MODEL, dtype=run.config.dtype)
    files.write_pool_dataset(files.read_jsonl(run.dir / files.POOL), run.dir / files.POOL_DATASET)
    from toolduel.report import build_report

    build_report(run.dir)


def run_phase(run: RunFolder, phase: str, body: Callable[[], None], everyone: bool = False) -> None:
    """Run ``phase`` unless it is done: on every process (a training phase, ``everyone``) or on
    the main process alone, the others waiting until it marks the phase done."""
    if run.done(phase):
        return
    if everyone or run.writer:
        between_phases()
        body()
    else:
        run.wait_for(phase)


def defend_and_guard(run: RunFolder, round_index: int, progress: bool) -> None:
    """The defence, then the guard; a defence the guard sends back is played again (``-retry<n>``
    phases), up to ``defence_retries`` times."""
    for attempt in range(run.config.defence_retries + 1 if run.config.defence_gate else 1):
        retry = f"-retry{attempt}" if attempt else ""
        run_phase(run, f"{round_index}:defend{retry}", lambda: phase_defend(run, round_index, progress, attempt),
                  everyone=True)
        if not run.config.defence_gate or run.done(f"{round_index}:evaluate"):  # runs from before the guard
            return
        run_phase(run, f"{round_index}:guard{retry}", lambda: phase_guard(run, round_index, progress, attempt))
        if guard_verdict(run, round_index) != "retry":
            return


def run_game(run: RunFolder, progress: bool = True) -> Path:
    """Play every round not yet done; returns the run folder."""
    require_vllm(run.config)  # found missing now, not after round 0's evaluation
    require_generation_backend(run.config)
    progress = progress and run.writer
    if run.writer and run.state["completed"]:  # a resumed run: the shared files again from the rounds' own
        rebuild_pool(run)
        rebuild_metrics(run)

    def evaluated(round_index: int) -> None:
        print_round(phase_evaluate(run, round_index, progress))
        run.mark(f"{round_index}:evaluate")

    def finished() -> None:
        finish(run)
        run.mark("finish")

    run_phase(run, "0:players", lambda: start_players(run, progress))
    run_phase(run, "0:evaluate", lambda: evaluated(0))
    for round_index in range(1, run.config.rounds + 1):
        console.rule(f"round {round_index} of {run.config.rounds}")
        run_phase(run, f"{round_index}:attack", lambda: phase_attack(run, round_index, progress), everyone=True)
        run_phase(run, f"{round_index}:harvest", lambda: phase_harvest(run, round_index, progress))
        defend_and_guard(run, round_index, progress)
        run_phase(run, f"{round_index}:evaluate", lambda: evaluated(round_index))
    run_phase(run, "finish", finished)
    return run.dir
