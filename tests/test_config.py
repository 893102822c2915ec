from pathlib import Path

import pytest
import yaml

from toolduel.config import ConfigError, load_config, to_yaml
from toolduel.settings import EvalConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("eval-*.yaml"))


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("data: bfcl:simple\nlimit: 5\nbatch_size: 4\n")
    config = load_config(EvalConfig, path, {"limit": 7, "model": None})
    assert (config.data, config.limit, config.batch_size) == ("bfcl:simple", 7, 4)  # flag wins, None = not given
    assert yaml.safe_load(to_yaml(config))["limit"] == 7


@pytest.mark.parametrize("text, message", [
    ("limt: 5\n", "unknown setting.*limt.*valid: api_key_env"),
    ("- a\n- b\n", "must hold a mapping"),
    ("data: [unclosed\n", "not valid YAML"),
    ("batch_size: 0\n", "batch_size must be at least 1"),
    ("temperature: -1\n", "temperature must be 0"),
    ("endpoint: 127.0.0.1:9\nmodel: m\n", "must be an http"),
    ("resume: true\n", "resume needs `out`"),
])
def test_bad_settings_say_how_to_fix_them(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(EvalConfig, path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(EvalConfig, tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = load_config(EvalConfig, path)
    assert isinstance(config, EvalConfig)


def test_exponent_without_a_dot_is_a_number_for_float_settings(tmp_path):
    # YAML 1.1 reads 3e-4 as a string; a float setting takes it as the number, from a file or a flag
    from toolduel.config import flag_overrides
    from toolduel.duel.config import GameConfig

    path = tmp_path / "run.yaml"
    path.write_text("defend_learning_rate: 3e-4\n")
    flags = flag_overrides(["--attack-learning-rate", "1e-5"], GameConfig)
    config = load_config(GameConfig, path, flags)
    assert (config.defend_learning_rate, config.attack_learning_rate) == (3e-4, 1e-5)
    path.write_text("defend_learning_rate: fast\n")
    with pytest.raises(ConfigError, match="defend_learning_rate"):
        load_config(GameConfig, path)


def test_the_cpu_config_spells_out_the_embedded_default():
    """configs/run-cpu.yaml says every value in it is the default: it stays so."""
    import dataclasses

    from toolduel.duel.config import GameConfig

    path = Path(__file__).parent.parent / "configs" / "run-cpu.yaml"
    written = yaml.safe_load(path.read_text())
    defaults = dataclasses.asdict(GameConfig())
    assert {key: defaults[key] for key in written} == written
    assert load_config(GameConfig, path) == GameConfig()
