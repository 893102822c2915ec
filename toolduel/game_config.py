"""Settings of the duel (``toolduel run``): one typed dataclass, loaded from YAML, flags over it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from toolduel.config import ConfigError, option
from toolduel.rewards import REWARD_FORMS


@dataclass
class GameConfig:
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
    # --- attack: GRPO on the query model against the frozen FC model ---------------------------
    attack_steps: int = option(20, "GRPO steps per round")
    attack_prompts_per_step: int = option(8, "seed samples per GRPO step")
    num_generations: int = option(8, "queries sampled per seed (the GRPO group)")
    attack_learning_rate: float = option(5e-4, "query model learning rate")
    beta: float = option(0.0, "KL weight against the reference query model (0: no reference model)")
    max_query_tokens: int = option(64, "longest query the query model writes")
    query_temperature: float = option(1.0, "sampling temperature of the query model")
    fc_samples: int = option(2, "k: FC answers per query, whose mean score is p_F")
    fc_temperature: float = option(0.7, "sampling temperature of the FC model when k > 1")
    reward_form: str = option("learnability", "attack: 1-p; learnability: 4p(1-p); band: 1-p inside band")
    band_low: float = option(0.1, "band form: lowest p_F that is paid")
    band_high: float = option(0.9, "band form: highest p_F that is paid")
    invalid_penalty: float = option(-1.0, "reward of a query that fails the validity gate")
    duplicate_penalty: float = option(0.2, "subtracted for a near-duplicate of an earlier query in the batch")
    # --- harvest --------------------------------------------------------------------------------
    harvest_seeds: int = option(256, "seed samples the trained query model rewrites per round")
    harvest_keep: str = option("successful", "successful: pool only queries that fooled the FC model; valid: all")
    pool_budget: int | None = option(None, "at most this many pool records added per round (equal-budget comparisons)")
    # --- defend: train the FC model on the pool of every round plus replayed seed data -----------
    defend: str = option("sft", "sft, or grpo with the FC reward")
    defend_epochs: float = option(2.0, "passes over the defence data")
    defend_learning_rate: float = option(1e-3, "FC model learning rate")
    defend_batch_size: int = option(32, "examples per FC training step")
    replay_ratio: float = option(1.0, "replayed seed examples per pool example (keeps plain skills and coverage)")
    replay_examples: int | None = option(None, "a fixed number of replayed seed examples instead of replay_ratio")
    partial_credit: bool = option(True, "grpo defence: shaped FC reward (right function, right arguments)")
    # --- generation and observability ----------------------------------------------------------
    batch_size: int = option(32, "prompts per generation batch")
    report_to: str = option("none", "trainer metrics: none, tensorboard, wandb, trackio")

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
