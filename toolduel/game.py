"""The duel: alternating rounds of attack, harvest, defend and evaluate (``toolduel run``).

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
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from toolduel import run_files as files
from toolduel.attack import harvest, run_attack
from toolduel.checkpoints import export_merged, load_causal_lm, load_tokenizer, save_checkpoint
from toolduel.config import ConfigError, load_config, to_yaml
from toolduel.data import load_samples
from toolduel.defend import defence_samples, defend
from toolduel.evaluate import evaluate
from toolduel.game_config import GameConfig
from toolduel.models import close_model
from toolduel.models.base import GenerationConfig
from toolduel.progress import console, progress_bar
from toolduel.referee.outcome import score_queries
from toolduel.schema import Sample
from toolduel.training.arguments import require_vllm
from toolduel.training.processes import (
    between_phases,
    is_main_process,
    process_count,
    run_alone,
    share_from_main,
    wait_for_everyone,
)
from toolduel.world.lexicon import world_lexicon

# --- the run folder and its state --------------------------------------------------------------


class Run:
    """A run folder: its config, and which phases are done (``state.json``).

    Every process holds the state in memory; only the main process (``self.main``) writes it."""

    def __init__(self, run_dir: Path, config: GameConfig):
        self.dir, self.config = run_dir, config
        self.main = is_main_process()
        if not self.main:  # one process speaks for all
            console.quiet = True
        self.state = self._read_state() or {"completed": [], "fc_path": None, "query_path": None}
        self.state.setdefault("seconds", {})
        self._last_mark = time.time()  # a phase's duration: from the previous mark (or the start) to its own

    def _read_state(self) -> dict | None:
        path = self.dir / files.STATE
        return json.loads(path.read_text()) if path.exists() else None

    @classmethod
    def start(cls, config: GameConfig) -> "Run":
        """A new run folder. With several processes the main one names and creates it (the
        default name is a timestamp, which the processes would not agree on) and tells the others."""
        run_dir, error = None, None
        if is_main_process():
            run_dir = Path(config.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
            if (run_dir / files.STATE).exists():
                error = f"{run_dir} already holds a run; continue it with --resume {run_dir}"
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                files.write_text_atomic(run_dir / files.CONFIG, to_yaml(dataclasses.replace(config, out=str(run_dir))))
        run_dir, error = share_from_main((run_dir, error))
        if error:
            raise ConfigError(error)
        return cls(Path(run_dir), dataclasses.replace(config, out=str(run_dir)))

    @classmethod
    def resume(cls, run_dir: str | Path) -> "Run":
        run_dir = Path(run_dir)
        if not (run_dir / files.CONFIG).exists():
            raise ConfigError(f"{run_dir} holds no run to resume ({files.CONFIG} is missing)")
        return cls(run_dir, load_config(GameConfig, run_dir / files.CONFIG))

    def done(self, phase: str) -> bool:
        return phase in self.state["completed"]

    def seconds_since_mark(self) -> float:
        return round(time.time() - self._last_mark, 1)

    def mark(self, phase: str, **paths: Path) -> None:
        self.state["seconds"][phase] = self.seconds_since_mark()
        self._last_mark = time.time()
        self.state["completed"].append(phase)
        self.state.update({key: str(Path(path).relative_to(self.dir)) for key, path in paths.items()})
        if self.main:
            files.write_json_atomic(self.dir / files.STATE, self.state)

    def wait_for(self, phase: str, poll_seconds: float = 1.0) -> None:
        """Wait (another process than the main one) until the main process marks ``phase`` done.

        Polling the state file, not a collective barrier: a phase can take longer than a
        process group's timeout. If the main process dies, the launcher stops this one."""
        while True:
            state = self._read_state()
            if state is not None and phase in state["completed"]:
                self.state = state
                self._last_mark = time.time()
                return
            time.sleep(poll_seconds)

    def path(self, key: str) -> Path:
        return self.dir / self.state[key]


# --- data --------------------------------------------------------------------------------------


def seed_samples(config: GameConfig, n: int, stream: str) -> list[Sample]:
    """``n`` seeds for one purpose (``stream``), the same on every resume. The world's seeds are
    plain train-split samples with calls: a no-call seed rewritten by the query model may well
    ask for a tool, which the rule check cannot tell, so no-call skills are kept by replay."""
    rng = random.Random(f"{config.seed}:{stream}")
    if config.seeds == "world:train":
        from toolduel.world.generator import generate_samples
        from toolduel.world.phrasing import PLAIN

        return generate_samples(n, seed=rng.randrange(10**9), kinds=("one_call", "two_call"), phrasings=(PLAIN,),
                                kind_weights=(0.8, 0.2), split="train", id_prefix=f"seed-{stream}")
    pool = [s for s in load_samples(config.seeds).samples if s.gold]
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def replay_samples(config: GameConfig, n: int, stream: str) -> list[Sample]:
    """Plain training data of every kind (one call, two calls, no call), replayed in defence."""
    if n == 0:
        return []
    if config.seeds == "world:train":
        from toolduel.world.generator import generate_samples
        from toolduel.world.phrasing import PLAIN
        from toolduel.world.training_data import FC_KIND_WEIGHTS

        seed = random.Random(f"{config.seed}:{stream}").randrange(10**9)
        return generate_samples(n, seed=seed, phrasings=(PLAIN,), kind_weights=FC_KIND_WEIGHTS, split="train",
                                id_prefix=f"replay-{stream}")
    everything = load_samples(config.seeds).samples
    rng = random.Random(f"{config.seed}:{stream}")
    return [everything[rng.randrange(len(everything))] for _ in range(n)]


def eval_sets(config: GameConfig) -> dict[str, list[Sample]]:
    """Held-out sets by name: each world set or BFCL category on its own, a JSONL file as one."""
    sets: dict[str, list[Sample]] = {}
    for spec, limit in ((config.heldout, config.heldout_limit), (config.extra_eval, config.extra_eval_limit)):
        if not spec:
            continue
        prefix, _, names = spec.partition(":")
        if prefix in ("world", "bfcl") and names:
            for name in [n.strip() for n in names.split(",") if n.strip()]:
                key = name if prefix == "world" else f"bfcl:{name}"
                sets[key] = load_samples(f"{prefix}:{name}", limit=limit).samples
        else:
            sets[Path(spec).stem] = load_samples(spec, limit=limit).samples
    return sets


def load_chat_model(path: str | Path, config: GameConfig, progress: bool = False, name: str | None = None):
    """A checkpoint of the run (a full model, or a LoRA adapter merged into its base) for generation."""
    from toolduel.models import load_model_for_generation

    options = {"gpu_memory_utilization": config.vllm_gpu_memory_utilization} \
        if config.generation_backend == "vllm" else {}
    return load_model_for_generation(path, config.generation_backend, batch_size=config.batch_size,
                                     progress=progress, name=name, dtype=config.dtype, **options)


def fc_player(run: Run, progress: bool = False, load: bool = True):
    """The current FC model for generation: from ``fc_server`` when the config names one (``load``:
    load this round's adapter into it first), else loaded from its checkpoint in the run folder."""
    if run.config.fc_server:
        from toolduel.fc_server import served_fc_model

        return served_fc_model(run.config, run.path("fc_path"), run.dir, load=load)
    return load_chat_model(run.path("fc_path"), run.config, progress, "FC model")


# --- the phases --------------------------------------------------------------------------------


def phase_attack(run: Run, round_index: int, progress: bool) -> None:
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    if config.attack_steps == 0:  # untargeted augmentation: the query model as it is
        console.print("attack: no steps; the query model is kept as it is")
        run.mark(f"{round_index}:attack")
        return
    seeds = seed_samples(config, config.attack_steps * config.attack_prompts_per_step, f"attack-{round_index}")
    if config.fc_server and not run.main:  # the main process loads the adapter into the server first
        wait_for_everyone()
        fc_model = fc_player(run, load=False)
    else:
        fc_model = fc_player(run)
        if config.fc_server:
            wait_for_everyone()
    result = run_attack(config, seeds, fc_model, run.path("query_path"), out_dir, progress=progress,
                        on_log=console.print)
    run.mark(f"{round_index}:attack", query_path=result.query_path)


def phase_harvest(run: Run, round_index: int, progress: bool) -> None:
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    seeds = seed_samples(config, config.harvest_seeds, f"harvest-{round_index}")
    query_path, fc_path = run.path("query_path"), run.path("fc_path")
    query_model, fc_model = load_chat_model(query_path, config, progress, "query model"), fc_player(run, progress)
    try:
        pool, stats = harvest(config, round_index, seeds, query_model, fc_model, str(query_path.relative_to(run.dir)),
                              str(fc_path.relative_to(run.dir)), out_dir)
    finally:  # a vLLM engine gives its GPU memory back before training starts again
        close_model(query_model)
        close_model(fc_model)
    files.write_jsonl_atomic(out_dir / files.POOL, pool)
    files.write_json_atomic(out_dir / "harvest_stats.json", stats)
    rebuild_pool(run)
    console.print(f"harvest: {stats['queries']} queries, validity {stats['validity_rate']:.2f}, attack success "
                  f"{stats['attack_success_rate']:.2f}, {len(pool)} added to the pool")
    run.mark(f"{round_index}:harvest")


def phase_defend(run: Run, round_index: int, progress: bool) -> None:
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    pool = files.read_jsonl(run.dir / files.POOL)
    replay_count = config.replay_examples if config.replay_examples is not None \
        else round(config.replay_ratio * len(pool))
    replay = replay_samples(config, replay_count, f"replay-{round_index}")
    samples = defence_samples(pool, replay, seed=config.seed + round_index)
    if not samples:  # nothing harvested yet: the FC model stays as it is
        if run.main:
            shutil.copytree(run.path("fc_path"), out_dir / "fc_model", dirs_exist_ok=True)
        console.print("defend: the pool is empty; the FC model is kept as it is")
        run.mark(f"{round_index}:defend", fc_path=out_dir / "fc_model")
        return
    started = time.time()
    with progress_bar("defend", total=None, enabled=progress) as update:
        defend(config, run.path("fc_path"), samples, out_dir, save_to=out_dir / "fc_model",
               on_step=lambda step, total: update(completed=step, total=total))
    console.print(f"defend: {len(pool)} pool + {len(replay)} replayed examples, {time.time() - started:.0f}s")
    run.mark(f"{round_index}:defend", fc_path=out_dir / "fc_model")


def phase_evaluate(run: Run, round_index: int, progress: bool) -> dict:
    """Held-out accuracy of the current FC model; for a round, also the attack success of this
    round's queries against the defended FC model, and its answers to the pool's queries."""
    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    fc_model = fc_player(run)
    metrics: dict[str, Any] = {"round": round_index, "accuracy": {}, "error_kinds": {}, "error_types": {},
                               "attack_success_rate": None, "validity_rate": None}
    for name, samples in eval_sets(config).items():
        summary = evaluate(fc_model, samples, out_dir / "eval" / name.replace(":", "_"),
                           GenerationConfig(max_new_tokens=128), batch_size=config.batch_size,
                           progress=progress, meta={"set": name})
        metrics["accuracy"][name] = summary["accuracy"]
        metrics["error_kinds"][name] = summary["error_kinds"]
        metrics["error_types"][name] = summary["error_types"]
    if round_index > 0:
        metrics.update(attack_after_defence(run, round_index, fc_model))
    close_model(fc_model)
    metrics["pool_size"] = len(files.read_jsonl(run.dir / files.POOL))
    prefix = f"{round_index}:"
    metrics["seconds"] = {phase[len(prefix):]: seconds for phase, seconds in run.state["seconds"].items()
                          if phase.startswith(prefix)} | {"evaluate": run.seconds_since_mark()}
    files.write_json_atomic(out_dir / "metrics.json", metrics)
    rebuild_metrics(run)
    return metrics


def attack_after_defence(run: Run, round_index: int, fc_model: Any) -> dict:
    from toolduel.attack import harvest_scoring
    from toolduel.referee.outcome import step_stats

    config, out_dir = run.config, files.round_dir(run.dir, round_index)
    harvested = files.read_jsonl(out_dir / "harvest.jsonl")
    pool = files.read_jsonl(out_dir / files.POOL)
    seeds = {s.id: s for s in seed_samples(config, config.harvest_seeds, f"harvest-{round_index}")}
    records = [r for r in harvested if r["seed_id"] in seeds]
    k, generation = harvest_scoring(config)  # scored as the harvest scored them
    outcomes = score_queries(fc_model, [seeds[r["seed_id"]] for r in records], [r["query"] for r in records],
                             k=k, generation=generation, lexicon=world_lexicon())
    by_seed = {r["seed_id"]: o for r, o in zip(records, outcomes)}
    after = [{"id": p["id"], "round": round_index, "raw_output": by_seed[p["seed_id"]].fc_outputs[0],
              "verdict": by_seed[p["seed_id"]].verdicts[0]} for p in pool if by_seed[p["seed_id"]].valid]
    files.write_jsonl_atomic(out_dir / "after_defence.jsonl", after)
    before = json.loads((out_dir / "harvest_stats.json").read_text())
    attack_log = files.read_jsonl(out_dir / "attack_log.jsonl")
    return {"attack_success_rate": step_stats(outcomes)["attack_success_rate"],
            "attack_success_rate_before_defence": before["attack_success_rate"],
            "validity_rate": before["validity_rate"],
            "pool_added": len(pool),
            "attack_steps": [{k: s[k] for k in ("step", "attack_success_rate", "validity_rate")} for s in attack_log]}


def _round_files(run: Run, name: str) -> list[Path]:
    """``rounds/round_<t>/<name>`` of every round that has one, in round order."""
    return sorted(run.dir.glob(f"rounds/round_*/{name}"), key=lambda p: int(p.parent.name.split("_")[1]))


def rebuild_pool(run: Run) -> None:
    records = [record for path in _round_files(run, files.POOL) for record in files.read_jsonl(path)]
    files.write_jsonl_atomic(run.dir / files.POOL, records)


def rebuild_metrics(run: Run) -> None:
    files.write_jsonl_atomic(run.dir / files.METRICS,
                             [json.loads(path.read_text()) for path in _round_files(run, "metrics.json")])


# --- the whole game ----------------------------------------------------------------------------


def world_models(budget: str, progress: bool = True):
    """The embedded world's models, built on first use (and cached). With several processes the
    build, which trains, runs in a child process of the main one (:func:`run_alone`)."""
    from toolduel.training.warm_start import ensure_world_models

    if process_count() > 1:
        run_alone(["world", "build", "--budget", budget], what="building the world models")
    return ensure_world_models(budget, progress=progress)


def start_players(run: Run, progress: bool = True) -> None:
    """Round 0's players: the configured models, or the embedded world's (built or cached)."""
    config = run.config
    fc_path, query_path = config.fc_model, config.query_model
    if fc_path is None or query_path is None:
        world = world_models(config.world_budget, progress)
        fc_path, query_path = fc_path or world.fc_path, query_path or world.query_path
    players = run.dir / "rounds" / "round_0"
    for name, source in (("fc_model", fc_path), ("query_model", query_path)):
        if Path(source).is_dir():  # a local checkpoint is copied, so the run folder is self-contained
            shutil.copytree(source, players / name, dirs_exist_ok=True)
        else:
            save_checkpoint(load_causal_lm(source, dtype=config.dtype), load_tokenizer(source), players / name)
    run.mark("0:players", fc_path=players / "fc_model", query_path=players / "query_model")


def finish(run: Run) -> None:
    """The final FC model (a full checkpoint: a LoRA adapter is merged into its base), the pool
    as a Hugging Face dataset, and the report."""
    export_merged(run.path("fc_path"), run.dir / files.FINAL_FC_MODEL, dtype=run.config.dtype)
    from datasets import Dataset

    pool = files.read_jsonl(run.dir / files.POOL)
    flat = [{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in pool]
    dataset_dir = run.dir / files.POOL_DATASET
    shutil.rmtree(dataset_dir, ignore_errors=True)
    if flat:
        Dataset.from_list(flat).save_to_disk(str(dataset_dir))
    try:
        from toolduel.report import build_report
    except ImportError:
        return
    build_report(run.dir)


def print_round(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"round {metrics['round']}")
    for column in [*metrics["accuracy"], "attack success", "validity", "pool"]:
        table.add_column(column, justify="right")

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    table.add_row(*[percent(v) for v in metrics["accuracy"].values()], percent(metrics["attack_success_rate"]),
                  percent(metrics["validity_rate"]), str(metrics.get("pool_size", 0)))
    console.print(table)


def _evaluate(run: Run, round_index: int, progress: bool) -> None:
    print_round(phase_evaluate(run, round_index, progress))
    run.mark(f"{round_index}:evaluate")


def _finish(run: Run) -> None:
    finish(run)
    run.mark("finish")


def _play(run: Run, phase: str, play: Callable[[], None], everyone: bool = False) -> None:
    """Play ``phase`` unless it is done: on every process (a training phase, ``everyone``) or on
    the main process alone, the others waiting until it marks the phase done."""
    if run.done(phase):
        return
    if everyone or run.main:
        between_phases()
        play()
    else:
        run.wait_for(phase)


def run_game(run: Run, progress: bool = True) -> Path:
    """Play every round not yet done; returns the run folder."""
    require_vllm(run.config)  # found missing now, not after round 0's evaluation
    progress = progress and run.main
    _play(run, "0:players", lambda: start_players(run, progress))
    _play(run, "0:evaluate", lambda: _evaluate(run, 0, progress))
    for round_index in range(1, run.config.rounds + 1):
        console.rule(f"round {round_index} of {run.config.rounds}")
        _play(run, f"{round_index}:attack", lambda: phase_attack(run, round_index, progress), everyone=True)
        _play(run, f"{round_index}:harvest", lambda: phase_harvest(run, round_index, progress))
        _play(run, f"{round_index}:defend", lambda: phase_defend(run, round_index, progress), everyone=True)
        _play(run, f"{round_index}:evaluate", lambda: _evaluate(run, round_index, progress))
    _play(run, "finish", lambda: _finish(run))
    return run.dir
