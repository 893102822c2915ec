"""Settings of the duel (``toolduel run``): one typed dataclass, loaded from YAML, flags over it."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

from toolduel.config import ConfigError, check_http_url, option
from toolduel.referee.judge import check_judge_settings
from toolduel.referee.rewards import REWARD_FORMS


@dataclass
class AttackSettings:
    """The GRPO attack and the validity judge: shared by the duel (:class:`GameConfig`) and the
    black-box attack (:class:`toolduel.blackbox_config.BlackBoxConfig`), so a setting means the
    same thing in both."""

    # --- attack: GRPO on the query model against the frozen FC model ---------------------------
    attack_steps: int = option(20, "GRPO steps (per round in the duel)")
    attack_prompts_per_step: int = option(8, "seed samples per GRPO step")
    num_generations: int = option(8, "queries sampled per seed (the GRPO group)")
    attack_learning_rate: float = option(5e-4, "query model learning rate")
    beta: float = option(0.0, "KL weight against the reference query model (0: no reference model)")
    max_query_tokens: int = option(64, "longest query the query model writes")
    query_temperature: float = option(1.0, "sampling temperature of the query model")
    fc_samples: int = option(2, "k: FC model answers per query, whose mean score is p_F")
    fc_temperature: float = option(0.7, "sampling temperature of the FC model when k > 1")
    reward_form: str = option("learnability", "attack: 1-p; learnability: 4p(1-p); band: 1-p inside band")
    band_low: float = option(0.1, "band form: lowest p_F that is paid")
    band_high: float = option(0.9, "band form: highest p_F that is paid")
    invalid_penalty: float = option(-1.0, "reward of a query that fails the validity gate")
    duplicate_penalty: float = option(0.2, "subtracted for a near-duplicate of an earlier query in the batch")
    # --- judge: a model confirms that a query asks for exactly the gold calls (toolduel/judge.py) ---
    judge_model: str | None = option(None, "judge: local path or hub id, or with judge_endpoint the served model "
                                           "name; none: the rule check alone decides validity")
    judge_mode: str = option("verify", "verify: the judge is shown the gold calls and says whether the query asks for "
                                       "them; solve: the judge answers the query as an FC model and its calls are "
                                       "checked (for a judge stronger than the FC model)")
    judge_endpoint: str | None = option(None, "base URL of an OpenAI-compatible server serving judge_model")
    judge_api_key_env: str = option("OPENAI_API_KEY", "environment variable holding judge_endpoint's API key")
    judge_prompt: str | None = option(None, "the judge's prompt file (default: the shipped toolduel/judge_prompt.md)")
    judge_cache: str | None = option(None, "JSONL cache of the judge's verdicts (default: judge_cache.jsonl in "
                                           "the output folder)")
    judge_max_tokens: int = option(256, "longest judge answer (raise it for a judge that reasons first)")


@dataclass
class GameConfig(AttackSettings):
    # --- where and what -----------------------------------------------------------------------
    out: str | None = option(None, "run folder (default: runs/<timestamp>)")
    rounds: int = option(2, "alternating rounds of attack, harvest, defend, evaluate")
    seed: int = option(0, "seed of every random choice in the run")
    world_budget: str = option("default", "build budget of the embedded world models (default, large, test)")
    fc_model: str | None = option(None, "FC model path or hub id (default: the embedded world FC model)")
    query_model: str | None = option(None, "query model path or hub id (default: the embedded world query model)")
    seeds: str = option("world:train", "seed samples the query model rewrites: world:train or a data spec")
    heldout: str = option("world:plain,hard,two_call,no_call", "held-out data spec evaluated every round")
    heldout_limit: int | None = option(100, "samples per held-out set")
    extra_eval: str | None = option(None, "another data spec evaluated every round, e.g. bfcl:simple_python")
    extra_eval_limit: int | None = option(50, "samples per category of extra_eval")
    # --- harvest --------------------------------------------------------------------------------
    harvest_seeds: int = option(256, "seed samples the trained query model rewrites per round")
    harvest_keep: str = option("successful", "successful: pool only queries that fooled the FC model; valid: all")
    harvest_greedy: bool = option(False, "harvest: the FC model answers each query once, greedily as in evaluation "
                                         "(true), or fc_samples times at fc_temperature as in the attack (false)")
    pool_budget: int | None = option(None, "at most this many pool records added per round (equal-budget comparisons)")
    # --- defend: train the FC model on the pool of every round plus replayed seed data -----------
    defend: str = option("sft", "sft, or grpo with the FC reward")
    defend_epochs: float = option(2.0, "passes over the defence data")
    defend_learning_rate: float = option(3e-4, "FC model learning rate (1e-3 cost the tiny FC model 2-4 points "
                                                       "of plain accuracy, docs/BENCHMARKS.md)")
    defend_batch_size: int = option(32, "examples per FC training step")
    replay_ratio: float = option(1.0, "replayed seed examples per pool example (keeps plain skills and coverage)")
    replay_examples: int | None = option(None, "a fixed number of replayed seed examples instead of replay_ratio")
    partial_credit: bool = option(True, "grpo defence: shaped FC reward (right function, right arguments)")
    # --- generation and observability ----------------------------------------------------------
    batch_size: int = option(32, "prompts per generation batch")
    report_to: str = option("none", "trainer metrics: none, tensorboard, wandb, trackio")
    # --- LoRA and distributed ---------------------------------------------------------------------
    query_lora: bool = option(False, "train the query model as a LoRA adapter (PEFT) instead of in full")
    fc_lora: bool = option(False, "train the FC model as a LoRA adapter (PEFT); final_fc_model is still merged")
    lora_rank: int = option(16, "LoRA rank r")
    lora_alpha: int = option(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    lora_target_modules: str = option("all-linear", "all-linear (every linear layer but the output head), or "
                                                    "module names, e.g. q_proj,k_proj,v_proj,o_proj")
    dtype: str = option("float32", "weights and training precision: float32, or bfloat16 (GPUs from Ampere on)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory, slower")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step; batch settings are per step "
                                                 "over all processes and split over processes x these steps")
    defend_max_length: int = option(512, "sft defence: longest training sequence in tokens (tools included)")
    use_vllm: bool = option(False, "GRPO rollouts with vLLM (pip install 'toolduel[vllm]'), for the attack "
                                   "and the grpo defence")
    vllm_mode: str = option("colocate", "colocate: vLLM inside each training process; server: a separate "
                                        "`trl vllm-serve` process")
    vllm_server_host: str = option("127.0.0.1", "server mode: host of the `trl vllm-serve` processes")
    vllm_server_port: int = option(8000, "server mode: port of `trl vllm-serve` holding the query model")
    defend_vllm_server_port: int = option(8001, "server mode, grpo defence: port of `trl vllm-serve` holding "
                                                "the FC model")
    generation_backend: str = option("transformers", "how the harvest and the evaluation generate: transformers, "
                                                     "or vllm (pip install 'toolduel[vllm]')")
    vllm_gpu_memory_utilization: float = option(0.3, "colocate mode: share of each GPU's memory vLLM may take")
    fc_server: str | None = option(None, "base URL of an OpenAI-compatible server (`vllm serve --enable-lora`) "
                                         "serving the FC model to the attack and the evaluation; needs fc_lora")
    fc_server_model: str | None = option(None, "name the server gives the round-0 FC model (default: fc_model)")
    fc_server_api_key_env: str = option("OPENAI_API_KEY", "environment variable holding fc_server's API key")
    fc_server_concurrency: int = option(32, "fc_server requests in flight at once per process")
    def __post_init__(self) -> None:
        positive = ("rounds", "attack_prompts_per_step", "max_query_tokens", "fc_samples", "harvest_seeds",
                    "defend_batch_size", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.attack_steps < 0:
            raise ConfigError(f"attack_steps must be 0 (no attack) or more (got {self.attack_steps})")
        if self.num_generations < 2:
            raise ConfigError(f"num_generations must be at least 2: GRPO compares queries within a group "
                              f"(got {self.num_generations})")
        if self.reward_form not in REWARD_FORMS:
            raise ConfigError(f"reward_form must be one of {', '.join(REWARD_FORMS)} (got {self.reward_form!r})")
        if not 0.0 <= self.band_low <= self.band_high <= 1.0:
            raise ConfigError(f"need 0 <= band_low <= band_high <= 1 (got {self.band_low}, {self.band_high})")
        if self.harvest_keep not in ("successful", "valid"):
            raise ConfigError(f"harvest_keep must be successful or valid (got {self.harvest_keep!r})")
        if self.defend not in ("sft", "grpo"):
            raise ConfigError(f"defend must be sft or grpo (got {self.defend!r})")
        for name in ("pool_budget", "replay_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, or left out (got {getattr(self, name)})")
        if self.replay_ratio < 0:
            raise ConfigError(f"replay_ratio must be 0 or more (got {self.replay_ratio})")
        if self.report_to not in ("none", "tensorboard", "wandb", "trackio"):
            raise ConfigError(f"report_to must be none, tensorboard, wandb or trackio (got {self.report_to!r})")
        if self.report_to != "none" and importlib.util.find_spec(self.report_to) is None:
            raise ConfigError(f"report_to={self.report_to} needs its package: pip install {self.report_to}")
        for name in ("attack_learning_rate", "defend_learning_rate", "defend_epochs", "query_temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        self._check_lora_and_distributed()

    def _check_lora_and_distributed(self) -> None:
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ConfigError(f"lora_rank and lora_alpha must be at least 1 (got {self.lora_rank}, {self.lora_alpha})")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if not self.lora_target_modules.strip() or "lm_head" in self.lora_target_modules:
            raise ConfigError(f"lora_target_modules must be all-linear or module names without lm_head (GRPO reads "
                              f"the output head's weight directly) (got {self.lora_target_modules!r})")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype must be float32 or bfloat16 (got {self.dtype!r})")
        if self.gradient_accumulation_steps < 1 or self.defend_max_length < 16:
            raise ConfigError(f"need gradient_accumulation_steps >= 1 and defend_max_length >= 16 (got "
                              f"{self.gradient_accumulation_steps}, {self.defend_max_length})")
        if self.generation_backend not in ("transformers", "vllm"):
            raise ConfigError(f"generation_backend must be transformers or vllm (got {self.generation_backend!r})")
        if self.vllm_mode not in ("colocate", "server"):
            raise ConfigError(f"vllm_mode must be colocate or server (got {self.vllm_mode!r})")
        for name in ("vllm_server_port", "defend_vllm_server_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a port number, 1 to 65535 (got {getattr(self, name)})")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ConfigError(f"vllm_gpu_memory_utilization must be in (0, 1] (got {self.vllm_gpu_memory_utilization})")
        if self.fc_server is not None:
            check_http_url("fc_server", self.fc_server)
            if not self.fc_lora:
                raise ConfigError("fc_server needs fc_lora: true: the server follows the defended FC model by "
                                  "loading each round's LoRA adapter, and cannot load fully trained weights")
            if self.fc_server_model is None and self.fc_model is None:
                raise ConfigError("fc_server needs fc_server_model (the name the server gives the FC model) "
                                  "or fc_model")
        if self.fc_server_concurrency < 1:
            raise ConfigError(f"fc_server_concurrency must be at least 1 (got {self.fc_server_concurrency})")
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.fc_server_api_key_env):  # never echo it: it may be a key
            raise ConfigError("fc_server_api_key_env must be the upper-case NAME of an environment variable "
                              "(e.g. OPENAI_API_KEY), not the key itself; export the key in that variable")
        check_judge_settings(self)
