"""One round of the duel with a model of real size on a GPU: generation speed and training step times.

    python benchmarks/gpu_smoke.py --out gpu_smoke.json           # a CUDA GPU, Qwen2.5-0.5B's shape
    python benchmarks/gpu_smoke.py --device cpu --tiny            # the same code path on a CPU, in a minute

Nothing is downloaded:

1. A byte-level BPE tokenizer is trained on the embedded world's text
   (``toolduel.world.tiny_models.train_tokenizer``, the world's chat template with ``tools=``).
   The world's text holds only about 3,000 distinct merges, so the vocabulary is ~3k tokens, not
   Qwen's 151,936: the transformer body is Qwen2.5-0.5B's exactly, but its embedding and output
   head are ~50 times smaller (about 360M parameters instead of 494M; ``model`` in the output).
2. A ``Qwen2ForCausalLM`` is built from the Qwen2.5-0.5B configuration written out below, with
   random weights, and saved to a temporary folder (``--workdir`` to keep it).
3. Generation is timed: FC answers to held-out world prompts, sampled, with the transformers
   backend, then with vLLM when it is installed (``load_model_for_generation``).
4. One round of the real game is played (``toolduel.duel.loop.run_game``) with that folder as both
   players: evaluate (round 0), attack (GRPO), harvest, defend (SFT), evaluate. Each GRPO and SFT
   step is timed through the phases' progress callbacks.

Random weights answer noise: validity and accuracy are about 0, the pool stays empty and the
defence trains on the replayed seed data (``replay_examples``). The point is speed, and that
every phase runs on the device.

Output: one JSON object on stdout (library logs go to stderr) and in ``--out``: ``environment``,
``model``, ``tokenizer``, ``generation`` (per backend: ``tokens_per_second``, new tokens,
seconds; vLLM ``skipped`` or ``error`` with the reason), ``game`` (``phase_seconds``; ``grpo`` and
``sft``: ``seconds_per_step`` is the median step after the first, ``first_step_s`` includes
the trainer's setup), ``errors`` and ``total_s``. Exit code 0 when every
part ran, 1 when one failed (the JSON says which), 2 for a bad setting.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

# Qwen/Qwen2.5-0.5B-Instruct's config.json, less the vocabulary (the tokenizer is trained here).
QWEN2_5_0_5B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
                "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True, "hidden_act": "silu"}

# Sizes of one smoke run; --tiny takes the second column. Flags override either.
PRESETS: dict[str, dict[str, Any]] = {
    "gpu": {"tokenizer_texts": 3000, "vocab_size": 8192, "gen_prompts": 128, "gen_tokens": 128, "gen_batch_size": 32,
            "attack_steps": 4, "attack_prompts_per_step": 8, "num_generations": 8, "max_query_tokens": 64,
            "fc_samples": 2, "harvest_seeds": 64, "eval_samples": 32, "defend_steps": 4, "defend_batch_size": 16},
    "tiny": {"tokenizer_texts": 200, "vocab_size": 400, "gen_prompts": 4, "gen_tokens": 16, "gen_batch_size": 4,
             "attack_steps": 2, "attack_prompts_per_step": 2, "num_generations": 2, "max_query_tokens": 12,
             "fc_samples": 2, "harvest_seeds": 4, "eval_samples": 2, "defend_steps": 2, "defend_batch_size": 4},
}


class SmokeError(Exception):
    """A setting or machine the smoke run cannot use; the message says what to do."""


# --- setup ---------------------------------------------------------------------------------------


def environment(device: str) -> dict:
    import torch

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"device": device, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "python": platform.python_version(), "torch": torch.__version__,
            **{package: version(package) for package in ("transformers", "trl", "peft", "vllm")}}


def train_world_tokenizer(texts: int, vocab_size: int, out_dir: Path) -> tuple[Any, dict]:
    """A BPE tokenizer trained on ``texts`` chat texts of the world (FC and query model rows)."""
    from toolduel.world.tiny_models import chat_texts, train_tokenizer
    from toolduel.world.training_data import fc_examples, query_examples

    started = time.perf_counter()
    # two thirds FC conversations (three answers each), one third query-model rows
    corpus = chat_texts(fc_examples(2 * texts, seed=0)[: texts * 2 // 3] + query_examples(texts // 3 + 1, seed=0))
    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size)
    tokenizer.save_pretrained(out_dir)
    return tokenizer, {"source": "trained here on the embedded world's chat texts", "texts": len(corpus),
                       "vocab_size_asked": vocab_size, "vocab_size": len(tokenizer),
                       "seconds": round(time.perf_counter() - started, 2)}


def build_random_model(architecture: dict, tokenizer: Any, dtype: str, device: str, seed: int, out_dir: Path) -> dict:
    """A Qwen2 causal LM of ``architecture`` with random weights, saved with its tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    started = time.perf_counter()
    config = Qwen2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **architecture)
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where it will run: seconds on a GPU, not a minute on a CPU
        model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    parameters = sum(p.numel() for p in model.parameters())  # tied embeddings are counted once
    embedding = model.get_input_embeddings().weight.numel()
    del model
    release_memory()
    return {"architecture": "Qwen2ForCausalLM", "weights": "random", "checkpoint_dtype": dtype,
            "parameters": parameters, "embedding_parameters": embedding, "vocab_size": len(tokenizer),
            "layers": architecture["num_hidden_layers"], "hidden_size": architecture["hidden_size"],
            "seconds_to_build_and_save": round(time.perf_counter() - started, 2)}


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- generation ----------------------------------------------------------------------------------


def time_generation(backend: str, model_dir: Path, n_prompts: int, new_tokens: int, batch_size: int,
                    dtype: str, device: str, vllm_memory: float) -> dict:
    """Tokens per second of sampled FC answers to ``n_prompts`` held-out world prompts."""
    from toolduel.data import load_samples
    from toolduel.models import close_model, load_model_for_generation
    from toolduel.models.base import GenerationConfig

    samples = load_samples("world:plain").samples
    samples = (samples * math.ceil(n_prompts / len(samples)))[:n_prompts]
    conversations, tools = [s.messages for s in samples], [s.tools for s in samples]
    options: dict[str, Any] = {"dtype": dtype}
    if backend == "transformers":
        options["device"] = device
    else:
        options |= {"gpu_memory_utilization": vllm_memory, "max_model_len": 4096}
    started = time.perf_counter()
    model = load_model_for_generation(model_dir, backend, batch_size=batch_size, name=backend, **options)
    load_seconds = time.perf_counter() - started
    try:
        model.generate(conversations[:batch_size], tools[:batch_size], GenerationConfig(max_new_tokens=4))  # warm-up
        started = time.perf_counter()
        generations = model.generate(conversations, tools, GenerationConfig(max_new_tokens=new_tokens,
                                                                            temperature=1.0, seed=0))
        seconds = time.perf_counter() - started
    finally:
        close_model(model)  # a vLLM engine gives its share of the GPU back
        del model
        release_memory()
    failed = [g.error for g in generations if g.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(generations)} generations failed, e.g. {failed[0]}")
    new = sum(g.meta["completion_tokens"] for g in generations)
    return {"backend": backend, "dtype": dtype, "prompts": len(generations),
            "batch_size": batch_size if backend == "transformers" else None,  # vLLM schedules its own
            "max_new_tokens": new_tokens, "new_tokens": new,
            "prompt_tokens": sum(g.meta["prompt_tokens"] for g in generations), "seconds": round(seconds, 3),
            "tokens_per_second": round(new / seconds, 1), "load_seconds": round(load_seconds, 2)}


# --- the game round ------------------------------------------------------------------------------


class StepClock:
    """Stands in for ``progress_bar`` in the game's modules and notes when each step ends: the
    attack advances its bar once per GRPO step, the defence once per SFT step. (The game has no
    timing hook of its own; its progress callbacks are where a step is seen to end.)"""

    def __init__(self) -> None:
        self.opened: dict[str, float] = {}
        self.ticks: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def progress_bar(self, description: str, total: int | None = None,
                     enabled: bool = True) -> Iterator[Callable[..., None]]:
        self.opened[description], ticks = time.perf_counter(), self.ticks.setdefault(description, [])
        ticks.clear()

        def advance(steps: int = 1, completed: int | None = None, total: int | None = None) -> None:
            ticks.append(time.perf_counter())

        yield advance

    def steps(self, description: str) -> dict:
        ticks = self.ticks.get(description)
        if not ticks:
            raise RuntimeError(f"no {description} step was timed: the game no longer reports steps through "
                               f"progress_bar('{description}', ...); update StepClock in benchmarks/gpu_smoke.py")
        durations = [end - start for start, end in zip([self.opened[description], *ticks], ticks)]
        steady = durations[1:] or durations
        return {"steps": len(ticks), "first_step_s": round(durations[0], 3),
                "seconds_per_step": round(statistics.median(steady), 3),
                "step_seconds": [round(d, 3) for d in durations]}

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Patched into the modules that draw the attack and defence bars, for the ``with`` block."""
        import toolduel.duel.defend
        import toolduel.training.grpo

        modules = (toolduel.training.grpo, toolduel.duel.defend)
        missing = [m.__name__ for m in modules if not hasattr(m, "progress_bar")]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} no longer import progress_bar; update StepClock in "
                               "benchmarks/gpu_smoke.py")
        originals = [m.progress_bar for m in modules]
        for module in modules:
            module.progress_bar = self.progress_bar
        try:
            yield
        finally:
            for module, original in zip(modules, originals):
                module.progress_bar = original


def game_settings(sizes: dict, model_dir: Path, run_dir: Path, dtype: str, seed: int) -> dict:
    """GameConfig settings for one round with ``model_dir`` as both players."""
    settings = {
        "out": str(run_dir), "rounds": 1, "seed": seed, "fc_model": str(model_dir), "query_model": str(model_dir),
        "heldout": "world:plain,no_call", "heldout_limit": sizes["eval_samples"], "extra_eval": None,
        "attack_steps": sizes["attack_steps"], "attack_prompts_per_step": sizes["attack_prompts_per_step"],
        "num_generations": sizes["num_generations"], "max_query_tokens": sizes["max_query_tokens"],
        "fc_samples": sizes["fc_samples"], "harvest_seeds": sizes["harvest_seeds"], "harvest_keep": "successful",
        "defend": "sft", "defend_epochs": 1.0, "defend_batch_size": sizes["defend_batch_size"],
        # the pool of a random attacker is (almost) empty: the defence's steps come from replayed data
        "replay_examples": sizes["defend_steps"] * sizes["defend_batch_size"],
        "batch_size": sizes["gen_batch_size"], "report_to": "none",
    }
    if dtype != "float32":  # the game's training precision, where this version of the game has the setting
        settings["dtype"] = dtype
    return settings


def play_one_round(settings: dict, progress: bool) -> dict:
    """``toolduel.duel.loop.run_game`` for one round; phase seconds from the run's state, step times
    from the StepClock."""
    from toolduel.config import load_config
    from toolduel.duel.config import GameConfig
    from toolduel.duel.loop import run_game, start_run
    from toolduel.run_files import read_jsonl, round_dir

    config = load_config(GameConfig, overrides=settings)
    clock = StepClock()
    started = time.perf_counter()
    with clock.installed():
        run_dir = run_game(start_run(config), progress=progress)
    seconds = time.perf_counter() - started
    state = json.loads((run_dir / "state.json").read_text())
    metrics = read_jsonl(run_dir / "metrics.jsonl")[-1]
    harvest_stats = json.loads((round_dir(run_dir, 1) / "harvest_stats.json").read_text())
    completions = config.attack_prompts_per_step * config.num_generations  # queries written per GRPO step
    return {
        "run_dir": str(run_dir),
        "seconds": round(seconds, 1),
        "phase_seconds": dict(state["seconds"]),
        "grpo": clock.steps("attack") | {"completions_per_step": completions,
                                         "fc_answers_per_step": completions * config.fc_samples},
        "sft": clock.steps("defend") | {"examples_per_step": config.defend_batch_size},
        "harvest": {"queries": harvest_stats["queries"], "validity_rate": harvest_stats["validity_rate"]},
        "round_1": {"accuracy": metrics["accuracy"], "attack_success_rate": metrics["attack_success_rate"],
                    "pool_size": metrics["pool_size"]},
        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k in settings and k != "out"},
    }


# --- the whole smoke run -------------------------------------------------------------------------


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep stdout for the JSON alone: library output, worker processes' included (they inherit
    file descriptor 1), goes to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def smoke(args: argparse.Namespace, sizes: dict, workdir: Path, result: dict) -> None:
    """Every part of the smoke run, into ``result``; a part that fails is recorded in
    ``result["errors"]`` and the rest go on."""
    from toolduel.cli import quiet_transformers

    quiet_transformers()
    result |= {"environment": environment(args.device), "errors": {}, "generation": []}
    tokenizer, result["tokenizer"] = train_world_tokenizer(sizes["tokenizer_texts"], sizes["vocab_size"],
                                                           workdir / "tokenizer")
    model_dir = workdir / "random_model"
    result["model"] = build_random_model(TINY if args.tiny else QWEN2_5_0_5B, tokenizer, args.dtype, args.device,
                                         args.seed, model_dir) | {"config": "tiny" if args.tiny else "Qwen2.5-0.5B"}
    if "transformers" in args.backends:
        result["generation"].append(generation_part("transformers", args, sizes, model_dir, result["errors"]))
    if not args.skip_game:  # before vLLM, which keeps a share of the GPU until it is closed
        result["game"] = run_game_part(args, sizes, model_dir, workdir, result["errors"])
    if "vllm" in args.backends:
        if args.device != "cuda":
            result["generation"].append({"backend": "vllm", "skipped": "vLLM needs a CUDA GPU"})
        elif result["environment"]["vllm"] is None:
            result["generation"].append({"backend": "vllm", "skipped": 'not installed: pip install "toolduel[vllm]"'})
        else:
            result["generation"].append(generation_part("vllm", args, sizes, model_dir, result["errors"]))


def generation_part(backend: str, args: argparse.Namespace, sizes: dict, model_dir: Path, errors: dict) -> dict:
    dtype = args.generation_dtype or ("bfloat16" if args.device == "cuda" else "float32")
    try:
        return time_generation(backend, model_dir, sizes["gen_prompts"], sizes["gen_tokens"], sizes["gen_batch_size"],
                               dtype, args.device, args.vllm_memory)
    except Exception as err:  # one backend failing must not hide the other numbers
        errors[f"generation:{backend}"] = one_line(err)
        traceback.print_exc()
        return {"backend": backend, "error": one_line(err)}


def run_game_part(args: argparse.Namespace, sizes: dict, model_dir: Path, workdir: Path, errors: dict) -> dict:
    try:
        return play_one_round(game_settings(sizes, model_dir, workdir / "run", args.dtype, args.seed), args.progress)
    except Exception as err:  # the run folder keeps whatever the phases wrote
        errors["game"] = one_line(err)
        traceback.print_exc()
        return {"error": one_line(err), "run_dir": str(workdir / "run")}
    finally:
        release_memory()


def one_line(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 400 else text[:397] + "..."


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="where everything runs (cpu hides the GPUs from this process)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and a few steps: the code path, fast")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--workdir", type=Path,
                        help="keep the tokenizer, random model and run folder here (default: a temporary folder, "
                             "removed at the end)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="precision of the saved checkpoint and of the game's training (the game's default: "
                             "float32)")
    parser.add_argument("--generation-dtype", choices=("float32", "bfloat16", "float16"),
                        help="precision of the timed generation, the same for both backends (default: bfloat16 on "
                             "cuda, float32 on cpu)")
    parser.add_argument("--backends", default="transformers,vllm",
                        help="generation backends to time, comma separated (vllm: when installed)")
    parser.add_argument("--vllm-memory", type=float, default=0.5, help="share of the GPU's memory vLLM may take")
    parser.add_argument("--skip-game", action="store_true", help="time generation only")
    parser.add_argument("--progress", action="store_true", help="show the game's progress bars (stderr)")
    parser.add_argument("--seed", type=int, default=0)
    for name, default in PRESETS["gpu"].items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {default}, with --tiny {PRESETS['tiny'][name]}")
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) if getattr(args, name) is not None else default
             for name, default in PRESETS["tiny" if args.tiny else "gpu"].items()}
    for name, value in sizes.items():
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if sizes["attack_steps"] < 2 or sizes["defend_steps"] < 2:
        parser.error("--attack-steps and --defend-steps must be at least 2: the first step includes the setup")
    if sizes["num_generations"] < 2:
        parser.error("--num-generations must be at least 2: GRPO compares the queries of a group")
    if not 0.0 < args.vllm_memory <= 1.0:
        parser.error(f"--vllm-memory is a share of the GPU's memory, in (0, 1] (got {args.vllm_memory})")
    args.backends = {b.strip() for b in args.backends.split(",") if b.strip()}
    unknown = args.backends - {"transformers", "vllm"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose from transformers, vllm")
    return args, sizes


def main(argv: list[str] | None = None) -> int:
    args, sizes = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainers pick a GPU by themselves when they see one
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}); run with --device cpu --tiny to check the code path on a CPU", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="toolduel-gpu-smoke-"))
    if (workdir / "run" / "state.json").exists():
        print(f"error: {workdir / 'run'} already holds a run; give an empty --workdir", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict[str, Any] = {"errors": {}}
    try:
        with stdout_to_stderr():
            smoke(args, sizes, workdir, result)
    except Exception as err:  # the tokenizer or the model could not be built: say so in the JSON too
        traceback.print_exc()
        result["errors"]["setup"] = one_line(err)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["workdir"] = str(workdir) if args.workdir else None
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
