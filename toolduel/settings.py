"""Settings groups: each part of the code takes the group it needs; each program composes them.

A group is a dataclass of settings with help texts, and a ``check`` that raises
:class:`~toolduel.config.ConfigError` saying how to fix a setting. A program's config inherits
the groups it uses, so one YAML file (or one set of flags) reads them together and a setting
means the same thing in every program:

- :class:`AttackSettings`: the GRPO attack on the query model and the query reward;
- :class:`JudgeSettings`: the validity judge (:mod:`toolduel.referee.judge`);
- :class:`TrainerSettings`: how any trainer runs (precision, LoRA, vLLM rollouts,
  accumulation), read by :mod:`toolduel.training`;
- :class:`EvalConfig`: ``toolduel eval``'s own settings.

The duel (``toolduel run``, :class:`toolduel.duel.config.GameConfig`) and the black-box attack
(``toolduel attack``, :class:`toolduel.blackbox.config.BlackBoxConfig`) both compose the attack,
judge and trainer groups.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from toolduel.config import ConfigError, check_env_name, check_http_url, option
from toolduel.data import WORLD_TRAIN
from toolduel.models.base import GenerationConfig
from toolduel.referee.judge import check_judge_settings
from toolduel.referee.rewards import REWARD_FORMS, QueryRewardSettings
from toolduel.referee.tool_grammar import EDIT_TOKENS
from toolduel.specs import STYLE_SPACES, TOOL_EDITS, surfaces_of


class SettingsGroup:
    """Runs the ``check`` of every group a config is made of, base groups first. ``PANEL`` heads
    the group's flags in ``--help``."""

    PANEL = "Settings"

    def __post_init__(self) -> None:
        for group in reversed(type(self).__mro__):
            check = group.__dict__.get("check")
            if check is not None:
                check(self)


@dataclass
class AttackSettings(SettingsGroup):
    """The GRPO attack on the query model against a frozen FC model, and the query reward."""

    PANEL = "Attack: GRPO on the query model"

    attack_steps: int = option(6, "GRPO steps (per round in the duel)")
    attack_surface: str | None = option(None, "what an attack edits: query (the request), or query,tools (also "
                                                "the tool list it is answered against: a move drawn like the styles; "
                                                "seeds: world:train); none: query,tools with world:train seeds, "
                                                "query with any other")
    tool_edits: str = option("drawn", "on the tool surface, who edits the tool list: drawn (a move of the world "
                                      "applied as drawn) or written (the query model writes the edits after its "
                                      "request, in a grammar the referee parses; asked for a drawn move)")
    attack_styles: str = option("composed", "the style each attack and harvest prompt asks for: composed (a perturbation "
                                            "kind or a combination of two or three), kinds (one kind), or none (no "
                                            "style line: the query model picks)")
    attack_prompts_per_step: int = option(4, "seed samples per GRPO step")
    num_generations: int = option(4, "queries sampled per seed (the GRPO group)")
    attack_learning_rate: float = option(2e-5, "query model learning rate")
    beta: float = option(0.0, "KL weight against the reference query model (0: no reference model)")
    max_query_tokens: int = option(48, "longest query the query model writes")
    query_temperature: float = option(0.7, "sampling temperature of the query model (the embedded query model's "
                                           "samples are 0.9 valid at 0.7, 0.75 at 1.0)")
    fc_samples: int = option(4, "k: FC model answers per query, whose mean score is p_F")
    fc_temperature: float = option(0.7, "sampling temperature of the FC model when k > 1")
    solvability_floor: bool = option(True, "a failure counts (in the reward, the harvest and every attack success "
                                           "rate) only where the query is answerable: the FC model right on some of "
                                           "its fc_samples answers, or a solve-mode judge right on it")
    reward_form: str = option("attack", "attack: 1-p; learnability: 4p(1-p) (needs fc_samples >= 2); band: 1-p "
                                        "inside band")
    band_low: float = option(0.1, "band form: lowest p_F that is paid")
    band_high: float = option(0.9, "band form: highest p_F that is paid")
    invalid_penalty: float | None = option(None, "reward of a query that fails the validity gate (none: left out of "
                                                 "the update, no advantage and not in its group's baseline)")
    duplicate_penalty: float = option(0.2, "subtracted for a near-duplicate of an earlier query in the batch")
    query_lora: bool = option(False, "train the query model as a LoRA adapter (PEFT) instead of in full")
    vllm_server_port: int = option(8000, "use_vllm in server mode: port of `trl vllm-serve` holding the query model")

    def surface(self) -> str:
        """The attack surfaces in play: ``attack_surface``, or by default both where the seeds are
        the world's training requests (whose tool lists the moves know how to edit)."""
        if self.attack_surface is not None:
            return self.attack_surface
        return "query,tools" if getattr(self, "seeds", None) == WORLD_TRAIN else "query"

    def check(self) -> None:
        if self.tool_edits not in TOOL_EDITS:
            raise ConfigError(f"tool_edits must be one of {', '.join(TOOL_EDITS)} (got {self.tool_edits!r})")
        if self.attack_styles not in STYLE_SPACES:
            raise ConfigError(f"attack_styles must be one of {', '.join(STYLE_SPACES)} (got {self.attack_styles!r})")
        try:
            surfaces = surfaces_of(self.surface())
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if "tools" in surfaces and getattr(self, "seeds", None) != WORLD_TRAIN:
            raise ConfigError("attack_surface tools edits the tool lists of the embedded world's requests: it needs "
                              f"seeds: {WORLD_TRAIN} (got {getattr(self, 'seeds', None)!r})")
        for name in ("attack_prompts_per_step", "max_query_tokens", "fc_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.attack_steps < 0:
            raise ConfigError(f"attack_steps must be 0 (no attack) or more (got {self.attack_steps})")
        if self.num_generations < 2:
            raise ConfigError(f"num_generations must be at least 2: GRPO compares queries within a group "
                              f"(got {self.num_generations})")
        if self.reward_form not in REWARD_FORMS:
            raise ConfigError(f"reward_form must be one of {', '.join(REWARD_FORMS)} (got {self.reward_form!r})")
        if self.reward_form == "learnability" and self.fc_samples < 2:
            raise ConfigError("reward_form learnability pays 4p(1-p), which is 0 for every query when p comes from "
                              "one answer (fc_samples 1): use fc_samples >= 2, or reward_form attack")
        solver = getattr(self, "judge_model", None) and getattr(self, "judge_mode", None) == "solve"
        if self.solvability_floor and self.fc_samples < 2 and not solver:
            raise ConfigError("solvability_floor needs fc_samples >= 2 (a query is answerable when the FC model is "
                              "right on some of its answers; with one answer no failure ever is) or a judge in "
                              "judge_mode solve; or set solvability_floor false to count unanswerable failures too")
        if not 0.0 <= self.band_low <= self.band_high <= 1.0:
            raise ConfigError(f"need 0 <= band_low <= band_high <= 1 (got {self.band_low}, {self.band_high})")
        for name in ("attack_learning_rate", "query_temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        check_port("vllm_server_port", self.vllm_server_port)

    def reward_settings(self) -> QueryRewardSettings:
        return QueryRewardSettings(form=self.reward_form, floor=self.solvability_floor,
                                   invalid_penalty=self.invalid_penalty, duplicate_penalty=self.duplicate_penalty,
                                   band=(self.band_low, self.band_high))

    def fc_generation(self, samples: int | None = None, seed: int | None = None) -> GenerationConfig:
        """How the FC model answers attacks: sampled when p_F is a mean over k > 1 answers (k:
        ``samples``, else ``fc_samples``), greedily otherwise."""
        temperature = self.fc_temperature if (samples or self.fc_samples) > 1 else 0.0
        return GenerationConfig(max_new_tokens=128, temperature=temperature, seed=seed)

    def query_generation(self, seed: int) -> GenerationConfig:
        """How the query model writes a query outside GRPO (the harvest): sampled as in the attack."""
        return GenerationConfig(max_new_tokens=self.completion_tokens(), temperature=self.query_temperature, seed=seed)

    def completion_tokens(self) -> int:
        """The longest completion of the query model: a query, and its tool edits where it writes them."""
        written = self.tool_edits == "written" and "tools" in surfaces_of(self.surface())
        return self.max_query_tokens + (EDIT_TOKENS if written else 0)


@dataclass
class JudgeSettings(SettingsGroup):
    """A model confirms that a query asks for exactly the gold calls (:mod:`toolduel.referee.judge`)."""

    PANEL = "Judge: a model confirms the rule check"

    judge_model: str | None = option(None, "judge: local path or hub id, or with judge_endpoint the served model "
                                           "name; none: the rule check alone decides validity")
    judge_mode: str = option("verify", "verify: the judge is shown the gold calls and says whether the query asks for "
                                       "them; solve: the judge answers the query as an FC model and its calls are "
                                       "checked (for a judge stronger than the FC model)")
    judge_endpoint: str | None = option(None, "base URL of an OpenAI-compatible server serving judge_model")
    judge_api_key_env: str = option("OPENAI_API_KEY", "environment variable holding judge_endpoint's API key")
    judge_prompt: str | None = option(None, "the judge's prompt file (default: the shipped "
                                            "toolduel/referee/judge_prompt.md)")
    judge_cache: str | None = option(None, "JSONL cache of the judge's verdicts (default: judge_cache.jsonl in "
                                           "the output folder)")
    judge_max_tokens: int = option(256, "longest judge answer (raise it for a judge that reasons first)")

    def check(self) -> None:
        check_judge_settings(self)


@dataclass
class TrainerSettings(SettingsGroup):
    """How every trainer runs: precision, memory, LoRA shape, vLLM rollouts (:mod:`toolduel.training`)."""

    PANEL = "Trainer: precision, LoRA, vLLM, accumulation"

    dtype: str = option("float32", "weights and training precision: float32, or bfloat16 (GPUs from Ampere on)")
    autocast: bool | None = option(None, "with float32 weights: train under bfloat16 autocast (mixed precision) and "
                                         "generate in bfloat16; none: where the hardware runs bfloat16 fast (a GPU "
                                         "from Ampere on, a CPU with AVX512-BF16 or AMX)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory (the "
                                                 "default's GRPO step 4.2 GB at peak, not 6.4; its defence twice as slow)")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step; batch settings are per step "
                                                 "over all processes and split over processes x these steps")
    train_layers: int | None = option(20, "full fine-tuning: only the top this many transformer layers train; "
                                          "the layers below and the token embeddings stay as they are (frozen "
                                          "layers run forward only, in bf16 with autocast: a CPU step costs a "
                                          "third less); null: every layer. LoRA ignores it")
    lora_rank: int = option(16, "LoRA rank r")
    lora_alpha: int = option(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    lora_target_modules: str = option("all-linear", "all-linear (every linear layer but the output head), or "
                                                    "module names, e.g. q_proj,k_proj,v_proj,o_proj")
    use_vllm: bool = option(False, "GRPO rollouts with vLLM (pip install 'toolduel[vllm]')")
    vllm_mode: str = option("colocate", "colocate: vLLM inside each training process; server: a separate "
                                        "`trl vllm-serve` process")
    vllm_server_host: str = option("127.0.0.1", "server mode: host of the `trl vllm-serve` processes")
    vllm_gpu_memory_utilization: float = option(0.3, "colocate mode: share of each GPU's memory vLLM may take")
    report_to: str = option("none", "trainer metrics: none, tensorboard, wandb, trackio")

    def check(self) -> None:
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ConfigError(f"lora_rank and lora_alpha must be at least 1 (got {self.lora_rank}, {self.lora_alpha})")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if not self.lora_target_modules.strip() or "lm_head" in self.lora_target_modules:
            raise ConfigError(f"lora_target_modules must be all-linear or module names without lm_head (GRPO reads "
                              f"the output head's weight directly) (got {self.lora_target_modules!r})")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype must be float32 or bfloat16 (got {self.dtype!r})")
        if self.autocast and self.dtype == "bfloat16":
            raise ConfigError("autocast is for float32 weights; with dtype bfloat16 everything already runs in "
                              "bfloat16 (drop one of them)")
        if self.train_layers is not None and self.train_layers < 1:
            raise ConfigError(f"train_layers must be at least 1, or null for every layer (got {self.train_layers})")
        if self.gradient_accumulation_steps < 1:
            raise ConfigError(f"need gradient_accumulation_steps >= 1 (got {self.gradient_accumulation_steps})")
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(f"vllm_mode must be colocate or server (got {self.vllm_mode!r})")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ConfigError(f"vllm_gpu_memory_utilization must be in (0, 1] (got {self.vllm_gpu_memory_utilization})")
        if self.report_to not in ("none", "tensorboard", "wandb", "trackio"):
            raise ConfigError(f"report_to must be none, tensorboard, wandb or trackio (got {self.report_to!r})")
        if self.report_to != "none" and importlib.util.find_spec(self.report_to) is None:
            raise ConfigError(f"report_to={self.report_to} needs its package: pip install {self.report_to}")


def use_threads(count: int) -> None:
    """torch's intra-op threads for this process and the processes it starts (``--threads``)."""
    if count < 1:
        raise ConfigError(f"--threads must be at least 1 (got {count})")
    os.environ["OMP_NUM_THREADS"] = str(count)
    import torch

    torch.set_num_threads(count)


def check_port(name: str, value: int) -> None:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number, 1 to 65535 (got {value})")


@dataclass
class EvalConfig(SettingsGroup):
    """``toolduel eval``: a model (local, or behind an endpoint) on BFCL, world or JSONL data."""

    PANEL = "Evaluation"

    data: str = option("world:plain,hard,two_call,no_call",
                       "bfcl:<categories> (bfcl:all for every python AST category), world:<sets>, or a JSONL path")
    model: str | None = option(None, "local path or hub id of a causal LM (none: the embedded world FC model); with "
                                     "`endpoint`, the served model name (none: the one model the server lists)")
    endpoint: str | None = option(None, "base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", "name of the environment variable holding the endpoint's API key")
    backend: str = option("transformers", "how a local model generates: transformers, or vllm "
                                          "(pip install 'toolduel[vllm]'; Linux with a CUDA GPU)")
    out: str | None = option(None, "output folder (default: runs/eval-<timestamp>)")
    limit: int | None = option(None, "at most this many samples per category or set (a JSONL file: in all)")
    batch_size: int = option(64, "rows the transformers backend decodes together (a finished row makes room "
                                 "for a waiting prompt)")
    max_new_tokens: int = option(256, "longest answer generated")
    temperature: float = option(0.0, "0 for greedy decoding")
    seed: int = option(0, "sampling seed")
    max_concurrency: int = option(8, "endpoint requests in flight at once")
    timeout: float = option(60.0, "seconds before an endpoint request is retried")
    skip_bad: bool = option(False, "skip malformed JSONL records (they are counted) instead of stopping",
                            switch=True)
    bfcl_root: str | None = option(None, "folder of BFCL_v*_<category>.json files (default: the bfcl-eval package)")
    resume: bool = option(False, "continue an evaluation in `out`, keeping the samples already scored", switch=True)

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1 (got {self.limit}); leave it out for no limit")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (got {self.batch_size})")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or more (got {self.temperature})")
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1 (got {self.max_concurrency})")
        if not 0 < self.timeout < float("inf"):
            raise ConfigError(f"timeout must be a positive number of seconds (got {self.timeout})")
        if self.endpoint is not None:
            check_http_url("endpoint", self.endpoint)
        check_env_name("api_key_env", self.api_key_env)
        if self.backend not in ("transformers", "vllm"):
            raise ConfigError(f"backend must be transformers or vllm (got {self.backend!r})")
        if self.endpoint is not None and self.backend != "transformers":
            raise ConfigError("backend applies to a local model; an endpoint generates on its own server "
                              "(drop --backend, or drop --endpoint to load the model here)")
        if self.resume and not self.out:
            raise ConfigError("resume needs `out`: the folder of the evaluation to continue")
