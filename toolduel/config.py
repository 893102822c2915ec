"""Typed configs: dataclasses loaded from YAML, overridden by command-line flags, validated on load.

Every field carries a ``help`` text (shown by ``--help`` and in error messages); a
``__post_init__`` raises :class:`ConfigError` saying how to fix a bad setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says how to fix it."""


def option(default: Any, help: str) -> Any:  # noqa: A002 - mirrors dataclass field metadata naming
    return field(default=default, metadata={"help": help})


def check_http_url(name: str, value: str) -> None:
    """One error for every URL setting (endpoints, servers): it must name its scheme."""
    if not str(value).startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL such as http://127.0.0.1:8000/v1 (got {value!r})")


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """``cls`` from a YAML file (optional), then ``overrides`` (flags given on the command line)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{where}; valid: {', '.join(sorted(fields))}")
    for name, value in values.items():
        if isinstance(value, str) and "float" in str(fields[name].type):
            values[name] = _number(name, value)
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(str(err)) from None


def flag_overrides(args: list[str], config_class: type) -> dict:
    """``--attack-steps 10 --partial-credit false`` -> {"attack_steps": 10, "partial_credit": False}."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict = {}
    index = 0
    while index < len(args):
        flag = args[index]
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name not in fields:
            raise ConfigError(f"unknown option {flag!r}; settings: "
                              + ", ".join("--" + n.replace("_", "-") for n in fields))
        if index + 1 >= len(args):
            raise ConfigError(f"option {flag} needs a value")
        values[name] = yaml.safe_load(args[index + 1])  # "10" -> 10, "false" -> False, "null" -> None
        index += 2
    return values


def _number(name: str, value: str) -> float:
    """A float setting given as text: YAML reads ``3e-4`` (no dot) as a string."""
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {value!r})") from None


def to_yaml(config: Any) -> str:
    """The config as YAML, for the run folder (no secrets live in configs: keys are env var names)."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


@dataclass
class EvalConfig:
    data: str = option("world:plain,hard,two_call,no_call",
                       "bfcl:<categories> (bfcl:all for every python AST category), world:<sets>, or a JSONL path")
    model: str | None = option(None, "local path or hub id of a causal LM; with `endpoint`, the served model name; "
                                     "none: the embedded world FC model")
    endpoint: str | None = option(None, "base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", "name of the environment variable holding the endpoint's API key")
    backend: str = option("transformers", "how a local model generates: transformers, or vllm "
                                          "(pip install \"toolduel[vllm]\"; Linux with a CUDA GPU)")
    out: str | None = option(None, "output folder (default: runs/eval-<timestamp>)")
    limit: int | None = option(None, "at most this many samples per category or set (a JSONL file: in all)")
    batch_size: int = option(16, "prompts per generation batch")
    max_new_tokens: int = option(256, "longest answer generated")
    temperature: float = option(0.0, "0 for greedy decoding")
    seed: int = option(0, "sampling seed")
    max_concurrency: int = option(8, "endpoint requests in flight at once")
    timeout: float = option(60.0, "seconds before an endpoint request is retried")
    skip_bad: bool = option(False, "skip malformed JSONL records (they are counted) instead of stopping")
    bfcl_root: str | None = option(None, "folder of BFCL_v*_<category>.json files (default: the bfcl-eval package)")
    resume: bool = option(False, "continue an evaluation in `out`, keeping the samples already scored")

    def __post_init__(self) -> None:
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
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds (got {self.timeout})")
        if self.endpoint is not None and not self.model:
            raise ConfigError("an endpoint needs `model`: the model name the server serves")
        if self.endpoint is not None:
            check_http_url("endpoint", self.endpoint)
        if self.backend not in ("transformers", "vllm"):
            raise ConfigError(f"backend must be transformers or vllm (got {self.backend!r})")
        if self.endpoint is not None and self.backend != "transformers":
            raise ConfigError("backend applies to a local model; an endpoint generates on its own server "
                              "(drop --backend, or drop --endpoint to load the model here)")
        if self.resume and not self.out:
            raise ConfigError("resume needs `out`: the folder of the evaluation to continue")
