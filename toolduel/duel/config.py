"""Settings of the duel (``toolduel run``): its own, and the attack, judge and trainer groups
(:mod:`toolduel.settings`); loaded from YAML, flags over it."""

from __future__ import annotations

from dataclasses import dataclass

from toolduel.config import ConfigError, check_env_name, check_http_url, option
from toolduel.data import DataError, check_spec
from toolduel.settings import AttackSettings, JudgeSettings, TrainerSettings, check_port
from toolduel.specs import HARVEST_STYLES
from toolduel.training.warm_start import check_world_budget


@dataclass
class GameConfig(AttackSettings, JudgeSettings, TrainerSettings):
    PANEL = "Duel: rounds, data, harvest, defence, generation"

    # --- where and what -----------------------------------------------------------------------
    out: str | None = option(None, "run folder (default: runs/<timestamp>)")
    rounds: int = option(2, "alternating rounds of attack, harvest, defend, evaluate")
    seed: int = option(0, "seed of every random choice in the run")
    world_budget: str = option("default", "build budget of the embedded world models (default: SmolLM2 warm-started on the world; test: tiny models in seconds)")
    fc_model: str | None = option(None, "FC model path or hub id (default: the embedded world FC model)")
    query_model: str | None = option(None, "query model path or hub id (default: the embedded world query model)")
    seeds: str = option("world:train", "seed samples the query model rewrites: world:train or a data spec")
    heldout: str = option("world:plain,hard,two_call,no_call,tools", "held-out data spec evaluated every round")
    heldout_limit: int | None = option(48, "samples per held-out set")
    after_defence_attack: bool = option(True, "every round's evaluation also measures the attack success of the round's "
                                              "query model against the defended FC model, on harvest_seeds fresh "
                                              "queries of k answers each (false: saves that time, the rate is not shown)")
    extra_eval: str | None = option(None, "another data spec evaluated every round, e.g. bfcl:simple_python")
    extra_eval_limit: int | None = option(50, "samples per category of extra_eval")
    allow_overlap: bool = option(False, "start even where the seeds (and so the pool and the replay) share samples "
                                        "with heldout or extra_eval: an evaluation of what the FC model trained on")
    # --- harvest --------------------------------------------------------------------------------
    harvest_styles: str = option("targeted", "targeted: each harvested seed's style drawn by Thompson sampling over the "
                                             "weaknesses the round's attack found per style; uniform: evenly")
    harvest_seeds: int = option(64, "seed samples the trained query model rewrites per round")
    harvest_keep: str = option("successful", "successful: pool only valid queries that fooled the FC model (answerable "
                                             "ones, with solvability_floor); valid: every valid query")
    harvest_greedy: bool = option(False, "harvest: the FC model answers each query once, greedily as in evaluation "
                                         "(true), or fc_samples times at fc_temperature as in the attack (false)")
    pool_budget: int | None = option(None, "at most this many pool records added per round (equal-budget comparisons): "
                                            "drawn evenly over the FC model's success bands, or with harvest_keep "
                                            "valid the first ones harvested")
    # --- defend: train the FC model on the pool of every round plus replayed seed data -----------
    defend: str = option("sft", "sft, or grpo with the FC reward")
    defend_epochs: float = option(2.0, "passes over the defence data")
    defend_learning_rate: float = option(1e-4, "FC model learning rate")
    defend_batch_size: int = option(8, "examples per FC training step")
    replay_ratio: float = option(1.0, "replayed seed examples per pool example (keeps plain skills and coverage)")
    replay_examples: int | None = option(None, "a fixed number of replayed seed examples instead of replay_ratio")
    replay_balance: bool = option(True, "replay tops each kind of request (one call, several, none) up to at least "
                                        "its share of the seeds in the defence data, replaying more where needed")
    defence_gate: bool = option(True, "after each defence, keep the round's starting FC model where the defended "
                                      "one lost a kind of request on a validation set beyond its noise")
    validation_size: int = option(192, "defence_gate: validation requests from the seeds' training split, the same "
                                       "number of each kind (world seeds: and of perturbed one-call requests); 48 "
                                       "of each of 4, the size of a held-out set, so that the gate sees a fall the "
                                       "evaluation would (at 16 a kind it missed a 25-point loss)")
    gate_z: float = option(2.0, "defence_gate: how many standard errors of the difference a fall must exceed")
    defence_retries: int = option(1, "defence_gate: where the guard rejects a defence, defend again from the round's "
                                     "starting FC model with 3x the replay and half the passes, up to this many "
                                     "times, before keeping the starting model (0: keep it at once)")
    partial_credit: bool = option(True, "grpo defence: shaped FC reward (right function, right arguments)")
    fc_lora: bool = option(False, "train the FC model as a LoRA adapter (PEFT); final_fc_model is still merged")
    defend_max_length: int = option(512, "sft defence: longest training sequence in tokens (tools included)")
    defend_vllm_server_port: int = option(8001, "use_vllm in server mode, grpo defence: port of `trl vllm-serve` "
                                                "holding the FC model")
    # --- generation: the harvest and the evaluation ------------------------------------------------
    batch_size: int = option(64, "rows the transformers backend decodes together (a finished row makes room "
                                 "for a waiting prompt)")
    generation_backend: str = option("transformers", "how the harvest and the evaluation generate: transformers, "
                                                     "or vllm (pip install 'toolduel[vllm]')")
    fc_server: str | None = option(None, "base URL of an OpenAI-compatible server (`vllm serve --enable-lora`) "
                                         "serving the FC model to the attack and the evaluation; needs fc_lora")
    fc_server_model: str | None = option(None, "name the server gives the round-0 FC model (default: fc_model)")
    fc_server_api_key_env: str = option("OPENAI_API_KEY", "environment variable holding fc_server's API key")
    fc_server_concurrency: int = option(32, "fc_server requests in flight at once per process")

    def check(self) -> None:
        check_world_budget(self.world_budget)
        for name, spec in (("seeds", self.seeds), ("heldout", self.heldout), ("extra_eval", self.extra_eval)):
            if spec is not None:
                try:
                    check_spec(spec, name, allow_world_train=name == "seeds")
                except DataError as err:
                    raise ConfigError(str(err)) from None
        for name in ("heldout_limit", "extra_eval_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, or null for every sample (got {getattr(self, name)})")
        for name in ("rounds", "harvest_seeds", "defend_batch_size", "batch_size", "fc_server_concurrency",
                     "validation_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.harvest_styles not in HARVEST_STYLES:
            raise ConfigError(f"harvest_styles must be one of {', '.join(HARVEST_STYLES)} (got {self.harvest_styles!r})")
        if self.harvest_keep not in ("successful", "valid"):
            raise ConfigError(f"harvest_keep must be successful or valid (got {self.harvest_keep!r})")
        if self.harvest_greedy and self.solvability_floor and not (self.judge_model and self.judge_mode == "solve"):
            raise ConfigError("harvest_greedy answers each harvested query once, which cannot show that a failed query "
                              "is answerable (solvability_floor): drop harvest_greedy, use a judge in judge_mode solve, "
                              "or set solvability_floor false")
        if self.defend not in ("sft", "grpo"):
            raise ConfigError(f"defend must be sft or grpo (got {self.defend!r})")
        for name in ("pool_budget", "replay_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, or left out (got {getattr(self, name)})")
        if self.replay_ratio < 0:
            raise ConfigError(f"replay_ratio must be 0 or more (got {self.replay_ratio})")
        if self.defence_retries < 0:
            raise ConfigError(f"defence_retries must be 0 or more (got {self.defence_retries})")
        if not self.gate_z > 0:
            raise ConfigError(f"gate_z must be a positive number of standard errors (got {self.gate_z})")
        for name in ("defend_learning_rate", "defend_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)})")
        if self.defend_max_length < 16:
            raise ConfigError(f"defend_max_length must be at least 16 (got {self.defend_max_length})")
        check_port("defend_vllm_server_port", self.defend_vllm_server_port)
        if self.generation_backend not in ("transformers", "vllm"):
            raise ConfigError(f"generation_backend must be transformers or vllm (got {self.generation_backend!r})")
        self._check_fc_server()

    def _check_fc_server(self) -> None:
        if self.fc_server is not None:
            check_http_url("fc_server", self.fc_server)
            if not self.fc_lora:
                raise ConfigError("fc_server needs fc_lora: true: the server follows the defended FC model by "
                                  "loading each round's LoRA adapter, and cannot load fully trained weights")
            if self.fc_server_model is None and self.fc_model is None:
                raise ConfigError("fc_server needs fc_server_model (the name the server gives the FC model) "
                                  "or fc_model")
        check_env_name("fc_server_api_key_env", self.fc_server_api_key_env)
