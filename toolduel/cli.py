"""The ``toolduel`` command: ``eval``, ``run`` (the duel), ``attack`` (against an endpoint), ``report``,
``serve`` (a checkpoint behind an OpenAI-compatible server) and ``world`` for the embedded tool world.

``eval``, ``run`` and ``attack`` take every setting of their config as a flag (``--attack-steps
10``), grouped in ``--help`` by settings group; ``--config FILE`` reads them from YAML first.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from toolduel.blackbox.config import BlackBoxConfig
from toolduel.config import (
    ConfigError,
    fields_in_order,
    flag_value,
    load_config,
    regular_file,
    to_yaml,
)
from toolduel.data import DataError, load_samples
from toolduel.duel.config import GameConfig
from toolduel.progress import console
from toolduel.run_files import CONFIG, RESULTS, STATE, SUMMARY, write_text_atomic
from toolduel.settings import EvalConfig, check_port, use_threads

app = typer.Typer(help="Adversarial data augmentation for tool-calling models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

from toolduel.world.commands import world_app  # noqa: E402 - `world sample`; `world build` is below

app.add_typer(world_app, name="world", help="The embedded synthetic tool world and its players' warm starts.")


from toolduel.report import report_command  # noqa: E402 - light: matplotlib loads only when a report is built

app.command("report", help="Render the weakness report (HTML + PNG) of a run or eval folder, or the figures of "
                           "an ablation's JSON.")(report_command)


@app.callback()
def toolduel(
    threads: Optional[int] = typer.Option(
        None, "--threads", envvar="TOOLDUEL_THREADS", metavar="N",
        help="CPU threads for torch in this process and the processes it starts (default: every core); two "
             "torch processes on one machine, such as `serve` and a client, each taking every core, slow each "
             "other far more than twice"),
) -> None:
    """Adversarial data augmentation for tool-calling models."""
    if threads is not None:
        try:
            use_threads(threads)
        except ConfigError as err:
            fail(str(err))


def settings_flags(config_class: type, **command_options: Any) -> Callable:
    """A decorator giving a command one flag per setting of ``config_class`` (each shown in
    ``--help`` under its settings group's panel, with its default) besides ``command_options``
    (name: ``typer.Option``). The command receives ``(ctx, settings, **command_options)``, where
    ``settings`` holds the flags given, their values read as YAML (``true``, ``3e-4``, ``null``)."""
    fields = fields_in_order(config_class)

    def panel(name: str) -> str:  # the group that brings the setting, even where a program changes its default
        owners = [c for c in config_class.__mro__ if name in vars(c).get("__annotations__", {})]
        return owners[-1].PANEL

    def flag(field: dataclasses.Field) -> inspect.Parameter:
        text = escape(f"{field.metadata['help']} (default: {field.default})")  # keeps [vllm] and the like
        if field.metadata.get("switch"):
            option = typer.Option(None, f"--{field.name.replace('_', '-')}", help=text, rich_help_panel=panel(field.name))
            return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[bool])
        option = typer.Option(None, f"--{field.name.replace('_', '-')}", help=text, metavar="VALUE",
                              rich_help_panel=panel(field.name))
        return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[str])

    def decorate(body: Callable) -> Callable:
        parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
                       for name, (annotation, option) in command_options.items()]
        parameters += [flag(field) for field in fields]

        def command(ctx: typer.Context, **values: Any) -> None:
            given = {f.name: values.pop(f.name) for f in fields}
            for name, value in given.items():
                if isinstance(value, str) and value.startswith("--"):  # `--attack-steps --no-progress`
                    fail(f"option --{name.replace('_', '-')} needs a value (got the option {value})")
            settings = {}
            for name, value in given.items():
                if value is None:
                    continue
                try:
                    settings[name] = value if isinstance(value, bool) else flag_value(value)
                except ConfigError as err:  # a value that is not YAML: `--limit '{'`
                    fail(f"--{name.replace('_', '-')}: {err}")
            if ctx.args:
                fail(f"unknown option {ctx.args[0]!r}; see --help for the settings")
            body(ctx, settings, **values)

        command.__signature__ = inspect.Signature(parameters)
        command.__doc__ = body.__doc__
        command.__name__ = body.__name__
        return command

    return decorate


CONFIG_OPTION = (Optional[Path], typer.Option(None, "--config", help="YAML file of these settings; flags override it"))
PROGRESS_OPTION = (bool, typer.Option(True, help="show progress bars"))
ANY_OPTIONS = {"allow_extra_args": True, "ignore_unknown_options": True}  # an unknown option is our one-line error


def fail(message: str) -> None:
    """One line, exit code 2; ``message`` is printed as it is (brackets in a path or a hint such as
    ``pip install 'toolduel[serve]'`` are text, not markup)."""
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(code=2)


def kept_for_resume(run_dir: Path, what: str) -> str:
    """How a stopped run or attack goes on: its folder keeps what it had ``what`` (finished, scored)."""
    return f"everything {what} so far stays in {run_dir}; continue with --resume {run_dir}"


def fail_to_load(model: str | None, err: Exception) -> None:
    """transformers could not load ``model`` (no model at that path, or not one it reads)."""
    fail(f"cannot load the model {model}: {' '.join(str(err).split())[:300]}")


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


def _holds(folder: Path, config_class: type) -> bool:
    """Whether the config in ``folder`` is one of ``config_class`` (the command that made it)."""
    try:
        load_config(config_class, folder / CONFIG)
    except ConfigError:
        return False
    return True


def _answerer(settings: EvalConfig) -> str:
    """Who answers an evaluation: the model, and where it runs."""
    where = f"at {settings.endpoint}" if settings.endpoint else f"on {settings.backend}"
    return f"{settings.model or 'the embedded FC model'} {where}"


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


@app.command("eval", context_settings=ANY_OPTIONS)
@settings_flags(EvalConfig, config=CONFIG_OPTION, progress=PROGRESS_OPTION)
def eval_command(ctx: typer.Context, settings: dict, config: Optional[Path], progress: bool) -> None:
    """Evaluate a model (local, hub id, or OpenAI-compatible endpoint) on BFCL, world or JSONL data."""
    from toolduel.evaluate import evaluate
    from toolduel.models.base import GenerationConfig

    try:
        settings = load_config(EvalConfig, config, settings)
        if settings.endpoint and not settings.model:
            from toolduel.models.endpoint import served_model

            settings = dataclasses.replace(settings, model=served_model(settings.endpoint, settings.api_key_env))
        report = load_samples(settings.data, limit=settings.limit, skip_bad=settings.skip_bad,
                              bfcl_root=settings.bfcl_root)
    except (ConfigError, DataError) as err:
        fail(str(err))
    for skipped in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(skipped)}", markup=True)
    if not report.samples:
        fail(f"no samples in {settings.data}")
    out_dir = Path(settings.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file, not a folder")
    if os.path.lexists(out_dir / STATE) or (os.path.lexists(out_dir / CONFIG) and not _holds(out_dir, EvalConfig)):
        fail(f"{out_dir} holds a run or an attack, not an evaluation; give the evaluation its own --out")
    if os.path.lexists(out_dir / RESULTS):
        if not settings.resume:
            fail(f"{out_dir} already holds an evaluation; continue it with --resume, or give another --out")
        try:
            regular_file(out_dir / RESULTS, "the evaluation's")
            before = load_config(EvalConfig, out_dir / CONFIG) if os.path.lexists(out_dir / CONFIG) else None
        except ConfigError as err:
            fail(str(err))
        if before is not None and _answerer(before) != _answerer(settings):
            fail(f"{out_dir} holds answers of {_answerer(before)}, not of {_answerer(settings)}; resume with the "
                 "same model, or give another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / CONFIG, to_yaml(settings))
    except OSError as err:
        fail(f"--out {out_dir} cannot be written ({err.strerror or err})")
    console.print(f"evaluating {len(report.samples)} samples from {settings.data} -> {out_dir}")
    quiet_transformers()
    try:
        chat_model = build_eval_model(settings)
    except ConfigError as err:
        fail(str(err))
    except (OSError, ValueError) as err:  # transformers: no model at that path, or not one it reads
        fail_to_load(settings.model, err)
    generation = GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                  seed=settings.seed)
    try:
        summary = evaluate(chat_model, report.samples, out_dir, generation, batch_size=settings.batch_size,
                           resume=settings.resume, progress=progress,
                           meta={"data": settings.data, "skipped_records": len(report.skipped)})
    except ConfigError as err:  # a results file that cannot be read or appended to
        fail(str(err))
    print_summary(summary, title=f"{summary['model']} on {settings.data}")
    console.print(f"results: {out_dir / RESULTS}  summary: {out_dir / SUMMARY}")


@app.command("run", context_settings=ANY_OPTIONS)
@settings_flags(GameConfig, config=CONFIG_OPTION,
                resume=(Optional[Path], typer.Option(None, "--resume", help="continue the run in this folder")),
                progress=PROGRESS_OPTION)
def run_command(ctx: typer.Context, settings: dict, config: Optional[Path], resume: Optional[Path],
                progress: bool) -> None:
    """Play the duel: attack, harvest, defend, evaluate, for a few rounds (embedded default: no arguments)."""
    from toolduel.duel.loop import resume_run, run_game, start_run

    try:
        if resume is not None:
            if config is not None or settings:
                fail("--resume takes the settings saved in the run folder; give no other settings")
            run = resume_run(resume)
        else:
            run = start_run(load_config(GameConfig, config, settings))
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


@app.command("attack", context_settings=ANY_OPTIONS)
@settings_flags(BlackBoxConfig, config=CONFIG_OPTION,
                resume=(Optional[Path], typer.Option(None, "--resume", help="continue the attack in this folder "
                                                                            "(with --max-requests: a new budget)")),
                progress=PROGRESS_OPTION)
def attack_command(ctx: typer.Context, settings: dict, config: Optional[Path], resume: Optional[Path],
                   progress: bool) -> None:
    """Train a query model against an FC model behind an OpenAI-compatible endpoint (only the query
    model learns); writes the adversarial set found and the weakness report."""
    from toolduel.blackbox.run import resume_attack, run_blackbox, start_attack

    try:
        if resume is not None:
            if config is not None or set(settings) - {"max_requests"}:
                fail("--resume takes the settings saved in the attack folder; only --max-requests may be given "
                     "(to raise the request budget)")
            run = resume_attack(resume, max_requests=settings.get("max_requests"))
        else:
            run = start_attack(load_config(BlackBoxConfig, config, settings))
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
    budget: str = typer.Option("default", "--budget", help="default (SmolLM2-135M-Instruct warm-started on the "
                                                           "world, a few minutes on 2 cores) or test (tiny models, "
                                                           "seconds)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cache has these models."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Build (or find in the cache) the embedded default's FC model and query model."""
    from toolduel.training.warm_start import BUDGETS, ensure_world_models

    if budget not in BUDGETS:
        raise typer.BadParameter(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}", param_hint="--budget")
    try:
        models = ensure_world_models(budget, progress=progress, force=force)
    except ConfigError as err:
        fail(str(err))
    typer.echo(json.dumps({"fc_path": str(models.fc_path), "query_path": str(models.query_path),
                           "timings": models.info.get("timings", {})}, indent=2))


@app.command("serve")
def serve_command(
    model: str = typer.Argument(..., help="a checkpoint folder (a round's FC model, final_fc_model), a LoRA "
                                          "adapter folder, a .gguf file, or smollm2"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (the checkpoint's), float32, bfloat16 or float16"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    tool_calls: str = typer.Option("parsed", "--tool-calls", help="parsed: <tool_call> blocks come back as OpenAI "
                                   "tool_calls (a malformed one as HTTP 500); text: every answer as text, for "
                                   "toolduel's parser (a malformed call is scored, as locally)"),
) -> None:
    """Serve a toolduel checkpoint behind an OpenAI-compatible server (transformers serve), with
    the chat template and tool-call parsing it needs, for toolduel eval --endpoint or any client."""
    from toolduel.serving import serve, serving_available, serving_checkpoint

    if not serving_available():
        fail("serving needs transformers' server: pip install 'toolduel[serve]' (FastAPI, uvicorn, openai)")
    try:
        check_port("--port", port)
    except ConfigError as err:
        fail(str(err))
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        fail(f"--dtype must be auto, float32, bfloat16 or float16 (got {dtype!r})")
    if device.startswith("cuda") and not _cuda_available():
        fail(f"--device {device}: no CUDA GPU is visible here; use --device cpu (or auto)")
    quiet_transformers()
    try:
        folder, changes = serving_checkpoint(model, tool_calls)
    except ConfigError as err:
        fail(str(err))
    except (OSError, ValueError) as err:
        fail_to_load(model, err)
    for change in changes:
        console.print(f"[dim]{escape(change)}[/dim]", markup=True)
    base_url = f"http://{host}:{port}/v1"
    console.print(f"serving {folder} as model {folder} at {base_url}; try it with\n"
                  f"  toolduel eval --endpoint {base_url} --data world:plain --limit 32\n"
                  f"  toolduel attack --endpoint {base_url} --seeds world:plain --max-requests 300",
                  soft_wrap=True, highlight=False, markup=False)
    serve(folder, host=host, port=port, dtype=dtype, device=device)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    """The ``toolduel`` command, ending the process through :func:`exit_process` (see there why)."""
    from toolduel.training.processes import exit_process

    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    else:  # pragma: no cover - click ends every command with SystemExit
        code = 0
    if isinstance(code, str):  # a message, as `sys.exit("...")` gives
        print(code, file=sys.stderr)
        code = 1
    exit_process(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
