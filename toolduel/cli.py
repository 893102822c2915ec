"""The ``toolduel`` command: ``eval``, ``run`` (the duel), ``attack`` (against an endpoint), ``report``,
and ``world`` for the embedded tool world."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolduel.blackbox_config import BlackBoxConfig
from toolduel.config import ConfigError, EvalConfig, flag_overrides, load_config, to_yaml
from toolduel.data import DataError, load_samples
from toolduel.progress import console

app = typer.Typer(help="Adversarial data augmentation for tool-calling models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

from toolduel.world.commands import world_app  # noqa: E402 - `world sample`; `world build` is below

app.add_typer(world_app, name="world", help="The embedded synthetic tool world and its players' warm starts.")


from toolduel.report import report_command  # noqa: E402 - light: matplotlib loads only when a report is built

app.command("report", help="Render the weakness report (HTML + PNG) of a run or eval folder.")(report_command)


@app.callback()
def toolduel() -> None:
    """Adversarial data augmentation for tool-calling models."""


def _help(name: str, config_class: type = EvalConfig) -> str:
    """The help text of a config field, for the flag that sets it."""
    return config_class.__dataclass_fields__[name].metadata["help"]


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(code=2)


def kept_for_resume(run_dir: Path, what: str) -> str:
    """How a stopped run or attack goes on: its folder keeps what it had ``what`` (finished, scored)."""
    return f"everything {what} so far stays in {run_dir}; continue with --resume {run_dir}"


def quiet_transformers() -> None:
    """Our own progress bars say where a run is; the libraries' bars and deprecation notices
    (about their own internals, nothing a user can act on) would bury them."""
    import warnings

    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\.")


def build_eval_model(config: EvalConfig):
    """The model an EvalConfig names: an endpoint, a local/hub model, or the embedded FC model."""
    from toolduel.models import load_model

    if config.endpoint:
        return load_model({"backend": "endpoint", "base_url": config.endpoint, "model": config.model,
                           "api_key_env": config.api_key_env, "max_concurrency": config.max_concurrency,
                           "timeout": config.timeout})
    path = config.model
    if path is None:
        from toolduel.training.warm_start import ensure_world_models

        path = str(ensure_world_models(progress=True).fc_path)
    if config.backend == "vllm":  # vLLM schedules its own batches; --batch-size only sets how often results are saved
        return load_model({"backend": "vllm", "path": path, "seed": config.seed})
    return load_model({"backend": "transformers", "path": path, "batch_size": config.batch_size})


def print_summary(summary: dict, title: str) -> None:
    table = Table(title=title)
    for column in ("category", "n", "correct", "accuracy", "failed"):
        table.add_column(column, justify="left" if column == "category" else "right")
    rows = list(summary["per_category"].items()) + [("all", summary | {"failed": summary["failed_requests"]})]
    for name, counts in rows:
        accuracy = "-" if counts["accuracy"] is None else f"{counts['accuracy']:.1%}"
        table.add_row(name, str(counts["n"]), str(counts["correct"]), accuracy, str(counts["failed"]))
    console.print(table)
    if summary["error_types"]:
        errors = Table(title="errors")
        errors.add_column("error type")
        errors.add_column("count", justify="right")
        for error_type, count in summary["error_types"].items():
            errors.add_row(error_type, str(count))
        console.print(errors)


@app.command("eval")
def eval_command(
    data: Optional[str] = typer.Option(None, help=_help("data")),
    model: Optional[str] = typer.Option(None, help=_help("model")),
    endpoint: Optional[str] = typer.Option(None, help=_help("endpoint")),
    api_key_env: Optional[str] = typer.Option(None, help=_help("api_key_env")),
    backend: Optional[str] = typer.Option(None, help=_help("backend")),
    out: Optional[str] = typer.Option(None, help=_help("out")),
    limit: Optional[int] = typer.Option(None, help=_help("limit")),
    batch_size: Optional[int] = typer.Option(None, help=_help("batch_size")),
    max_new_tokens: Optional[int] = typer.Option(None, help=_help("max_new_tokens")),
    temperature: Optional[float] = typer.Option(None, help=_help("temperature")),
    seed: Optional[int] = typer.Option(None, help=_help("seed")),
    max_concurrency: Optional[int] = typer.Option(None, help=_help("max_concurrency")),
    timeout: Optional[float] = typer.Option(None, help=_help("timeout")),
    skip_bad: Optional[bool] = typer.Option(None, "--skip-bad", help=_help("skip_bad")),
    bfcl_root: Optional[str] = typer.Option(None, help=_help("bfcl_root")),
    resume: Optional[bool] = typer.Option(None, "--resume", help=_help("resume")),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of these settings; flags override it"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Evaluate a model (local, hub id, or OpenAI-compatible endpoint) on BFCL, world or JSONL data."""
    from toolduel.evaluate import evaluate
    from toolduel.models.base import GenerationConfig

    overrides = {k: v for k, v in locals().items() if k not in ("config", "progress", "evaluate", "GenerationConfig")}
    try:
        settings = load_config(EvalConfig, config, overrides)
        report = load_samples(settings.data, limit=settings.limit, skip_bad=settings.skip_bad,
                              bfcl_root=settings.bfcl_root)
    except (ConfigError, DataError) as err:
        fail(str(err))
    for skipped in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {skipped}")
    if not report.samples:
        fail(f"no samples in {settings.data}")
    out_dir = Path(settings.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(settings), encoding="utf-8")
    console.print(f"evaluating {len(report.samples)} samples from {settings.data} -> {out_dir}")
    quiet_transformers()
    try:
        chat_model = build_eval_model(settings)
    except ConfigError as err:
        fail(str(err))
    generation = GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                  seed=settings.seed)
    summary = evaluate(chat_model, report.samples, out_dir, generation, batch_size=settings.batch_size,
                       resume=settings.resume, progress=progress,
                       meta={"data": settings.data, "skipped_records": len(report.skipped)})
    print_summary(summary, title=f"{summary['model']} on {settings.data}")
    console.print(f"results: {out_dir / 'results.jsonl'}  summary: {out_dir / 'summary.json'}")


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of game settings; flags override it"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this folder"),
    out: Optional[str] = typer.Option(None, help="run folder (default: runs/<timestamp>)"),
    rounds: Optional[int] = typer.Option(None, help="alternating rounds"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Play the duel: attack, harvest, defend, evaluate, for a few rounds (embedded default: no arguments).

    Any setting of the game config can be given as a flag, e.g. --attack-steps 10 --reward-form attack."""
    from toolduel.game import Run, run_game
    from toolduel.game_config import GameConfig

    try:
        overrides = flag_overrides(ctx.args, GameConfig) | {"out": out, "rounds": rounds}
        if resume is not None:
            if config is not None or any(v is not None for v in overrides.values()):
                fail("--resume takes the settings saved in the run folder; give no other settings")
            run = Run.resume(resume)
        else:
            run = Run.start(load_config(GameConfig, config, overrides))
    except (ConfigError, DataError) as err:
        fail(str(err))
    console.print(f"run folder: {run.dir}")
    quiet_transformers()
    try:
        run_game(run, progress=progress)
    except (ConfigError, DataError) as err:
        fail(f"{err} ({kept_for_resume(run.dir, 'finished')})")
    except KeyboardInterrupt:
        fail(f"interrupted; {kept_for_resume(run.dir, 'finished')}")
    console.print(f"done: {run.dir}")


@app.command("attack", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def attack_command(
    ctx: typer.Context,
    endpoint: Optional[str] = typer.Option(None, help=_help("endpoint", BlackBoxConfig)),
    model: Optional[str] = typer.Option(None, help=_help("model", BlackBoxConfig)),
    seeds: Optional[str] = typer.Option(None, help=_help("seeds", BlackBoxConfig)),
    out: Optional[str] = typer.Option(None, help=_help("out", BlackBoxConfig)),
    max_requests: Optional[int] = typer.Option(None, help=_help("max_requests", BlackBoxConfig)),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of attack settings; flags override it"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the attack in this folder (with "
                                                                  "--max-requests: a new request budget)"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Train a query model against an FC model behind an OpenAI-compatible endpoint (only the query
    model learns); writes the adversarial set found and the weakness report.

    Any setting of the attack config can be given as a flag, e.g. --attack-steps 10 --fc-samples 1."""
    from toolduel.blackbox import AttackRun, run_blackbox

    try:
        overrides = flag_overrides(ctx.args, BlackBoxConfig) | {"endpoint": endpoint, "model": model, "seeds": seeds,
                                                              "out": out, "max_requests": max_requests}
        if resume is not None:
            if config is not None or any(v is not None for k, v in overrides.items() if k != "max_requests"):
                fail("--resume takes the settings saved in the attack folder; only --max-requests may be given "
                     "(to raise the request budget)")
            run = AttackRun.resume(resume, max_requests=max_requests)
        else:
            run = AttackRun.start(load_config(BlackBoxConfig, config, overrides))
    except (ConfigError, DataError) as err:
        fail(str(err))
    console.print(f"attack folder: {run.dir}")
    quiet_transformers()
    try:
        summary = run_blackbox(run, progress=progress)
    except (ConfigError, DataError) as err:
        fail(f"{err} ({kept_for_resume(run.dir, 'scored')})")
    except KeyboardInterrupt:
        fail(f"interrupted; {kept_for_resume(run.dir, 'scored')}")
    console.print(summary.message, soft_wrap=True, highlight=False, markup=False)
    if summary.stopped == "endpoint":
        raise typer.Exit(code=1)


@world_app.command("build")
def world_build_command(
    budget: str = typer.Option("default", "--budget", help="default (about 7 minutes on 2 cores), large (a "
                                                           "stronger query model, about 20 minutes) or test "
                                                           "(seconds)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cache has these models."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Build (or find in the cache) the world's tokenizer, FC model and query model."""
    from toolduel.training.warm_start import BUDGETS, ensure_world_models

    if budget not in BUDGETS:
        raise typer.BadParameter(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}", param_hint="--budget")
    models = ensure_world_models(budget, progress=progress, force=force)
    typer.echo(json.dumps({"fc_path": str(models.fc_path), "query_path": str(models.query_path),
                           "tokenizer_path": str(models.tokenizer_path),
                           "timings": models.info.get("timings", {})}, indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
