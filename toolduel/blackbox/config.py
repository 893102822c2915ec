"""Settings of the black-box attack (``toolduel attack``): its own, and the attack, judge and
trainer groups (:mod:`toolduel.settings`) that the duel composes too, so ``--dtype``,
``--query-lora``, ``--use-vllm`` or ``--gradient-accumulation-steps`` mean here what they mean
in ``toolduel run``. Loaded from YAML, flags over it.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolduel.config import ConfigError, check_http_url, option
from toolduel.data import DataError, check_spec
from toolduel.settings import AttackSettings, JudgeSettings, TrainerSettings
from toolduel.training.warm_start import check_world_budget


@dataclass
class BlackBoxConfig(AttackSettings, JudgeSettings, TrainerSettings):
    PANEL = "Endpoint, budget, seeds, harvest"

    # --- the attack's defaults where every FC answer is a paid request ----------------------------
    fc_samples: int = option(1, "k: FC model answers per query, whose mean score is p_F (each a request)")
    solvability_floor: bool = option(False, "a failure counts (in the reward, the adversarial set and the attack "
                                            "success rate) only where the query is answerable: the endpoint right on "
                                            "some of its fc_samples answers (fc_samples >= 2: k requests a query), "
                                            "or a solve-mode judge right on it")

    # --- the FC model behind an OpenAI-compatible endpoint ---------------------------------------
    endpoint: str | None = option(None, "base URL of the server, with its API prefix, e.g. http://127.0.0.1:8000/v1")
    model: str | None = option(None, "the model name the server serves (vLLM: the name given to `vllm serve`; "
                                            "default: the one model the server lists)")
    api_key_env: str = option("OPENAI_API_KEY", "name of the environment variable holding the endpoint's API key "
                                                "(unset: requests go without one)")
    max_concurrency: int = option(8, "requests in flight at once")
    timeout: float = option(60.0, "seconds before a request is given up and retried")
    max_retries: int = option(4, "retries of a request on 429, 5xx, timeouts and dropped connections")
    backoff_base: float = option(0.5, "seconds before the first retry, doubling each time (a Retry-After header wins)")
    max_requests: int | None = option(None, "request budget: the run stops cleanly once this many requests were sent "
                                            "to the endpoint(s) (none: no limit)")
    failure_limit: int = option(32, "stop when this many queries in a row got no answer (the endpoint is down)")
    # --- where and what ----------------------------------------------------------------------------
    out: str | None = option(None, "output folder (default: runs/attack-<timestamp>)")
    seed: int = option(0, "seed of every random choice in the run")
    seeds: str = option("bfcl:simple_python", "seed samples the query model rewrites: bfcl:<categories>, "
                                              "world:<sets>, world:train (the world's training requests), or a "
                                              "JSONL file")
    seeds_limit: int | None = option(None, "at most this many seed samples per category (a JSONL file: in all)")
    skip_bad: bool = option(False, "skip malformed JSONL seed records (they are counted) instead of stopping")
    bfcl_root: str | None = option(None, "folder of BFCL_v*_<category>.json files (default: the bfcl-eval package)")
    query_model: str | None = option(None, "query model path or hub id (default: the embedded world query model)")
    world_budget: str = option("default", "build budget of the embedded world query model (default: SmolLM2 warm-started on the world; test: tiny models in seconds)")
    save_steps: int = option(5, "save a training checkpoint every this many steps (what --resume continues from)")
    # --- harvest: queries sampled from the trained query model at the end -------------------------
    harvest_seeds: int = option(64, "seed samples the trained query model rewrites at the end (0: none)")
    harvest_keep: str = option("successful", "the adversarial set: successful (queries that beat the endpoint) "
                                             "or valid (every valid query)")
    batch_size: int = option(64, "rows the query model decodes together in the harvest (transformers backend)")

    def check(self) -> None:
        if not self.endpoint:
            raise ConfigError("endpoint is required: the base URL of the FC model's OpenAI-compatible server, "
                              "e.g. --endpoint http://127.0.0.1:8000/v1")
        check_http_url("endpoint", self.endpoint)
        if self.harvest_keep not in ("successful", "valid"):
            raise ConfigError(f"harvest_keep must be successful or valid (got {self.harvest_keep!r})")
        for name in ("max_concurrency", "failure_limit", "save_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 < self.timeout < float("inf") or not 0 <= self.backoff_base < float("inf") or self.max_retries < 0:
            raise ConfigError(f"need timeout > 0, backoff_base >= 0 and max_retries >= 0 (got {self.timeout}, "
                              f"{self.backoff_base}, {self.max_retries})")
        if self.max_requests is not None and self.max_requests < self.fc_samples:
            raise ConfigError(f"max_requests must be at least fc_samples ({self.fc_samples}): one query takes that "
                              f"many requests (got {self.max_requests}); leave it out for no limit")
        for name in ("seeds_limit", "harvest_seeds"):
            value = getattr(self, name)
            if value is not None and value < (1 if name == "seeds_limit" else 0):
                raise ConfigError(f"{name} must be {'at least 1' if name == 'seeds_limit' else '0 or more'} "
                                  f"(got {value})")
        if self.attack_steps < 1:
            raise ConfigError(f"attack_steps must be at least 1 (got {self.attack_steps})")
        check_world_budget(self.world_budget)
        try:
            check_spec(self.seeds, "seeds", allow_world_train=True)
        except DataError as err:
            raise ConfigError(str(err)) from None
        try:  # the endpoint client checks api_key_env (a NAME, never the key) and its own limits
            self.endpoint_model()
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def endpoint_model(self):
        """The FC model behind the endpoint (an :class:`~toolduel.models.endpoint.EndpointChatModel`)."""
        from toolduel.models.endpoint import EndpointChatModel

        return EndpointChatModel(self.endpoint, self.model, api_key_env=self.api_key_env, timeout=self.timeout,
                                 max_retries=self.max_retries, backoff_base=self.backoff_base,
                                 backoff_max=max(20.0, self.backoff_base), max_concurrency=self.max_concurrency)
