"""Typed configs: dataclasses loaded from YAML, overridden by command-line flags, validated on load.

Every field carries a ``help`` text (shown by ``--help`` and in error messages); a check
raises :class:`ConfigError` saying how to fix a bad setting. The settings themselves are in
:mod:`toolduel.settings` (the groups and ``toolduel eval``'s) and in each program's config.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import urllib.parse
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says how to fix it."""


def option(default: Any, help: str, switch: bool = False) -> Any:  # noqa: A002 - mirrors field metadata naming
    """A setting with its help text; a ``switch`` is given on the command line without a value
    (``--skip-bad``), any other setting with one (``--query-lora true``)."""
    return field(default=default, metadata={"help": help, "switch": switch})


def check_env_name(name: str, value: str) -> None:
    """One error for every API key setting: it names an environment variable, in upper case,
    and is never the key itself (whose value the message does not repeat, nor any file keep)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ConfigError(f"{name} must be the upper-case NAME of an environment variable (e.g. OPENAI_API_KEY), "
                          "not the key itself; export the key in that variable")


def check_http_url(name: str, value: str) -> None:
    """One error for every URL setting (endpoints, servers): an http(s) URL with a host, a port
    in 1-65535 where one is given, and no control characters or spaces."""
    example = "an http(s) URL such as http://127.0.0.1:8000/v1"
    text = str(value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be {example} (got {text[:80]!r})")
    if re.search(r"[\x00-\x20\x7f]", text):
        raise ConfigError(f"{name} must be {example}, without spaces or control characters (got {text[:80]!r})")
    try:
        parsed = urllib.parse.urlsplit(text)
        port = parsed.port  # raises for a port that is no number or out of range
    except ValueError as err:
        raise ConfigError(f"{name} must be {example} ({err}; got {text[:80]!r})") from None
    if not parsed.hostname:
        raise ConfigError(f"{name} must be {example}, with a host (got {text[:80]!r})")
    if port == 0:
        raise ConfigError(f"{name} must be {example}, with a port from 1 to 65535 (got {text[:80]!r})")


MAX_FILE_BYTES = 1 << 30  # no file a run reads is larger (a pool, a ledger, a data set)


def regular_file(path: str | Path, what: str = "file", max_bytes: int | None = MAX_FILE_BYTES) -> int:
    """The size of ``path`` if it is a regular file of at most ``max_bytes``; else a
    :class:`ConfigError` naming it (``what``: how the message calls it). A device such as
    ``/dev/zero``, a FIFO, a socket, a folder or a symbolic link loop is refused before it is
    opened, so that no read hangs or fills memory."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file (a device, a FIFO or a socket); only files are read")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ConfigError(f"{what} {path} is {info.st_size:,} bytes, more than the {max_bytes:,} read")
    return info.st_size


def read_file_text(path: str | Path, what: str = "file", max_bytes: int = MAX_FILE_BYTES,
                   errors: str = "strict") -> str:
    """The UTF-8 text of ``path``, a regular file of at most ``max_bytes`` (:func:`regular_file`);
    with ``errors="strict"`` a :class:`ConfigError` when it is not UTF-8 text."""
    regular_file(path, what, max_bytes)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:  # it grew since it was measured
        raise ConfigError(f"{what} {path} is more than the {max_bytes:,} bytes read")
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """``cls`` from a YAML file (optional), then ``overrides`` (flags given on the command line)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = yaml_value(read_file_text(path, "config file", MAX_CONFIG_BYTES), f"config file {path}")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{where}; valid: {', '.join(sorted(fields))}")
    values = {name: typed(name, value, str(fields[name].type)) for name, value in values.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError, OverflowError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None


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
        values[name] = flag_value(args[index + 1])
        index += 2
    return values


def flag_value(text: str) -> Any:
    """A setting's value as written after its flag, read as YAML: "10" -> 10, "false" -> False,
    "null" -> None (a float setting given as "3e-4" is made a number by :func:`load_config`)."""
    return yaml_value(text, f"the value {text[:40]!r}")


MAX_CONFIG_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few hundred bytes of nested aliases expand to
    gigabytes, and no setting needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not supported in toolduel configs; write the value out")
        return super().compose_node(parent, index)


def yaml_value(text: str, what: str) -> Any:
    """``text`` read as YAML, without aliases; a :class:`ConfigError` naming ``what`` otherwise."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not valid YAML: {err}".splitlines()[0]) from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be settings") from None


_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


def typed(name: str, value: Any, type_text: str) -> Any:
    """``value`` as the setting ``name`` of type ``type_text`` (a dataclass annotation such as
    ``int | None``) takes it, or a :class:`ConfigError` naming the setting and what it takes.

    A float setting takes a whole number, and text that reads as a number (YAML reads ``3e-4``,
    without a dot, as text); a text setting takes a number as its text (``--out 2024``)."""
    kinds = [kind.strip() for kind in type_text.split("|")]
    if value is None:
        if "None" in kinds:
            return None
    elif "bool" in kinds and isinstance(value, bool):
        return value
    elif isinstance(value, bool):
        pass  # true/false is no number and no text
    elif "int" in kinds and isinstance(value, int):
        return value
    elif "float" in kinds and isinstance(value, (int, float, str)):
        try:
            return float(value)
        except (ValueError, OverflowError):
            pass
    elif "str" in kinds and isinstance(value, (str, int, float)):
        return str(value)
    wanted = " or ".join(_TYPE_WORDS.get(kind, "nothing (null)" if kind == "None" else kind) for kind in kinds)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(f"{name} must be {wanted} (got {shown})")


def to_yaml(config: Any) -> str:
    """The config as YAML, for the run folder (no secrets live in configs: keys are env var names):
    the program's own settings first, then each settings group it is made of."""
    values = dataclasses.asdict(config)
    return yaml.safe_dump({field.name: values[field.name] for field in fields_in_order(type(config))}, sort_keys=False)


def fields_in_order(config_class: type) -> list[dataclasses.Field]:
    """A config's settings: its own first, then those of each settings group it is made of (a
    setting whose default a program changes stays in its group)."""
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    names = [name for cls in config_class.__mro__ for name in vars(cls).get("__annotations__", {}) if name in fields]
    last = {name: position for position, name in enumerate(names)}
    return [fields[name] for position, name in enumerate(names) if last[name] == position]
