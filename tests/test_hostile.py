"""Hostile input, hostile endpoints, damaged folders: one clear line (exit code 2, no traceback),
and nothing already on disk lost. One test (or one property) per class of failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.data import DataError, load_samples
from toolduel.evaluate import read_results
from toolduel.models.endpoint import EndpointChatModel
from toolduel.run_files import RESULTS, read_jsonl

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                         "parameters": {"type": "object", "required": ["city"],
                                                        "properties": {"city": {"type": "string"}}}}}
KEY = "sk-test-0123456789abcdef"


def record(id_, query="get_weather city=Paris"):
    return {"id": id_, "tools": [TOOL], "messages": [{"role": "user", "content": query}, {
        "role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]}]}


def write_records(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def run(*args: str):
    return CliRunner().invoke(app, [*args, "--no-progress"])


def one_line_error(result, *names: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for name in names:
        assert name in result.output, result.output


# --- 1, 2: what a server answers is written whatever it holds, and never the key ---------------


def test_a_lone_surrogate_from_the_endpoint_is_recorded_not_fatal(tmp_path):
    data = write_records(tmp_path / "s.jsonl", [record("a"), record("b")])
    surrogate = b'{"choices": [{"message": {"content": "broken \\ud800 text"}, "finish_reason": "stop"}]}'
    with FakeOpenAIServer(responder=lambda body: surrogate) as server:
        result = run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "m", "--out",
                     str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    records = read_results(tmp_path / "out" / RESULTS)
    assert [r["raw_output"] for r in records] == ["broken \ud800 text"] * 2  # as received, read back exactly


def test_a_key_pasted_as_a_variable_name_is_refused_before_anything_is_written(tmp_path):
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    result = run("eval", "--data", str(data), "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                 "--api-key-env", KEY, "--out", str(tmp_path / "out"))
    one_line_error(result, "api_key_env")
    assert KEY not in result.output and not (tmp_path / "out").exists()


def test_an_endpoint_echoing_the_key_has_it_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_HOSTILE_KEY", KEY)
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    echo = {"role": "assistant", "content": f"you sent Bearer {KEY}", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": KEY})}}]}
    with FakeOpenAIServer(responder=lambda body: echo) as server:
        result = run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "m",
                     "--api-key-env", "TOOLDUEL_HOSTILE_KEY", "--out", str(tmp_path / "out"))
        assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"  # the key did go to the server
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path


# --- 3: bounded answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault, what", [("trickle:0.3", "timeout"), ("huge", "more than the")])
def test_a_slow_or_endless_answer_costs_one_request_not_the_run(fault, what):
    with FakeOpenAIServer(faults=lambda index, body: fault) as server:
        model = EndpointChatModel(server.base_url, "m", timeout=1.0, max_retries=0)
        started = time.monotonic()
        [answer] = model.generate([[{"role": "user", "content": "hi"}]], [[]])
    assert answer.error and what in answer.error and time.monotonic() - started < 5


def test_a_huge_tool_call_is_refused_unread():
    big = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": json.dumps({"x": "a" * 3_000_000})}}]}
    with FakeOpenAIServer(responder=lambda body: big) as server:
        [answer] = EndpointChatModel(server.base_url, "m", max_retries=0).generate(
            [[{"role": "user", "content": "hi"}]], [[]])
    assert answer.error and "bytes" in answer.error and answer.tool_calls is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=600))
def test_any_bytes_from_a_server_become_an_answer_or_a_named_failure(body):
    with FakeOpenAIServer(responder=lambda request: body) as server:
        [answer] = EndpointChatModel(server.base_url, "m", max_retries=0).generate(
            [[{"role": "user", "content": "hi"}]], [[]])
    assert (answer.error is None) != (answer.error is not None and answer.text == "")


# --- 4: an evaluation's results are appended, never rewritten or truncated -----------------------


def test_an_existing_evaluation_is_refused_without_resume_and_kept_with_it(tmp_path):
    data = write_records(tmp_path / "s.jsonl", [record("a"), record("b"), record("c")])
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        assert run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "m", "--out",
                   str(out)).exit_code == 0
        before = (out / RESULTS).read_text()
        one_line_error(run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "m",
                           "--out", str(out)), "already holds an evaluation")
        assert (out / RESULTS).read_text() == before
        (out / RESULTS).write_text(before + '{"id": "torn", "cate')  # a crash mid-line
        server.reset()
        result = run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "m", "--out",
                     str(out), "--resume")
        assert result.exit_code == 0 and server.request_count == 0  # all three were scored
    assert (out / RESULTS).read_text() == before  # the torn line cut, nothing else touched


# --- 5, 7: records the loader accepts are records the run can use -----------------------------------


@pytest.mark.parametrize("records, message", [
    ([record("a"), record("a")], "id 'a' was already used on line 1"),
    ([record(None)], "'id' must be text or a whole number"),
    ([{**record("a"), "messages": "hello"}], "'messages' must be a non-empty list"),
    ([{**record("a"), "messages": [1, 2]}], "'messages' must be a non-empty list"),
    ([{"id": "x", "tools": [{"name": "f", "parameters": {"type": "object", "properties": []}}],
       "messages": [{"role": "user", "content": "q"}], "gold": []}], "'properties' must be an object"),
    ([{**record("a"), "category": ["x"]}], "'category' must be text"),
    ([{"id": "x", "tools": [], "messages": [{"role": "user", "content": "q"}], "gold": [], "meta": "m"}],
     "'meta' must be an object"),
    (['{"id": "x", "n": ' + "9" * 5000 + "}"], "not readable"),
    ([record("a", query="bad \ud800 query")], "lone surrogate"),
])
def test_a_record_that_would_fail_later_is_named_now(tmp_path, records, message):
    path = write_records(tmp_path / "bad.jsonl", records)
    with pytest.raises(DataError, match=message):
        load_samples(str(path))
    if len(records) == 1:  # skipped and counted with --skip-bad
        assert len(load_samples(str(path), skip_bad=True).skipped) == 1


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                        max_size=4), max_leaves=20)
RECORD = st.fixed_dictionaries({"id": JSON, "tools": JSON, "messages": JSON}, optional={"gold": JSON, "query": JSON,
                                                                                       "answers": JSON,
                                                                                       "category": JSON, "meta": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record_=RECORD | JSON)
def test_any_json_record_is_a_usable_sample_or_a_named_line(tmp_path, record_):
    from toolduel.checker import check_sample
    from toolduel.parsing import parse_calls
    from toolduel.prompts import fc_example
    from toolduel.run_files import json_text

    path = tmp_path / "any.jsonl"
    path.write_text(json_text(record_) + "\n", encoding="utf-8")
    try:
        samples = load_samples(str(path)).samples
    except DataError as err:
        assert str(err).startswith(f"{path}:1:") and "\n" not in str(err)
        return
    for sample in samples:  # what later code does with a sample works
        json_text(sample.to_dict()).encode("utf-8")
        fc_example(sample)
        check_sample(sample, parse_calls(""))
        assert isinstance(sample.query, str)


# --- 6: pool ids are unique when seeds repeat ----------------------------------------------------------


def test_pool_ids_stay_unique_when_seeds_repeat(tmp_path):
    from toolduel.duel.config import GameConfig
    from toolduel.duel.harvest import harvest
    from toolduel.models.base import Generation
    from toolduel.world.generator import generate_samples

    seed = generate_samples(1, seed=0, kinds=("one_call",))[0]

    class Echo:  # the query model repeats the seed, with a word of its own; the FC model never answers right
        name = "echo"

        def __init__(self, words):
            self.words = words

        def generate(self, conversations, tools, config=None):
            return [Generation(f"{seed.query} {word}" if any("Seed:" in m["content"] for m in c) else "no")
                    for c, word in zip(conversations, self.words)]

    config = GameConfig(fc_samples=1, solvability_floor=False, attack_surface="query")
    words = ["Please.", "Thanks.", "Quickly.", "Today."]
    pool, _ = harvest(config, 1, [seed] * 4, Echo(words), Echo(words), "q", "f", tmp_path)
    assert len(pool) == 4 and len({p["id"] for p in pool}) == 4
    assert [r["index"] for r in read_jsonl(tmp_path / "harvest.jsonl")] == [0, 1, 2, 3]
    # the same query four times is one example: it joins the pool once
    pool, _ = harvest(config, 1, [seed] * 4, Echo(["Please."] * 4), Echo(words), "q", "f", tmp_path)
    assert [p["harvest_index"] for p in pool] == [0]


# --- 8, 10: settings -------------------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefg", "bcdefgh")]
    bomb.write_text("\n".join(lines) + "\ndata: *h\n")
    started = time.monotonic()
    one_line_error(run("eval", "--config", str(bomb)), "aliases")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("args, names", [
    (["run", "--seed", "abc"], ["seed must be a whole number"]),
    (["run", "--batch-size", "2.5"], ["batch_size must be a whole number"]),
    (["run", "--heldout", "123"], ["heldout", "123"]),
    (["run", "--heldout-limit", "0"], ["heldout_limit must be at least 1"]),
    (["run", "--world-budget", "bogus"], ["world_budget must be one of"]),
    (["eval", "--limit", "abc"], ["limit must be a whole number"]),
    (["eval", "--data", "[1, 2]"], ["data must be text"]),
    (["attack", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--seed", "2024-01-01"], ["seed"]),
])
def test_a_setting_of_the_wrong_type_names_itself(args, names, tmp_path):
    one_line_error(run(*args, "--out", str(tmp_path / "out")), *names)
    assert not (tmp_path / "out").exists()  # refused before a folder is written


def test_config_and_output_paths_that_are_not_what_they_should_be(tmp_path):
    one_line_error(run("run", "--config", str(tmp_path)), "is a folder")
    (tmp_path / "latin1.yaml").write_bytes(b"data: caf\xe9\n")
    one_line_error(run("eval", "--config", str(tmp_path / "latin1.yaml")), "not UTF-8")
    (tmp_path / "file").write_text("x")
    one_line_error(run("run", "--out", str(tmp_path / "file"), "--world-budget", "test"), "is a file")
    (tmp_path / "empty").mkdir()
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    one_line_error(run("eval", "--data", str(data), "--model", str(tmp_path / "empty"), "--out",
                       str(tmp_path / "o")), "cannot load the model")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_special_file_is_refused_before_it_is_read(tmp_path, special):
    """/dev/zero would fill memory and a FIFO never ends (or never starts): whether given as a
    config, found as a run folder's config.yaml (report) or as an evaluation's results.jsonl
    (eval --resume), it is refused in one line, at once."""
    import os

    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    started = time.monotonic()
    one_line_error(run("eval", "--config", special), "not a regular file")
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    one_line_error(run("eval", "--data", special, "--model", "m"), "not a regular file")
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "config.yaml").write_text(f"data: {data}\nendpoint: http://127.0.0.1:9/v1\nmodel: m\n")
    (evaluation / RESULTS).symlink_to(special)
    one_line_error(run("eval", "--data", str(data), "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                       "--out", str(evaluation), "--resume"), "not a regular file")
    duel = tmp_path / "duel"
    duel.mkdir()
    (duel / "metrics.jsonl").write_text('{"round": 0, "accuracy": {"plain": 0.5}}\n')
    (duel / "config.yaml").symlink_to(special)
    report = CliRunner().invoke(app, ["report", str(duel)])
    assert report.exit_code == 0, report.output  # the rest renders; the file is named as a problem
    assert "not a regular file" in (duel / "report" / "report.html").read_text()
    assert time.monotonic() - started < 60


# --- 9: damaged run folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", ['{"completed": ["0:play', "", "[1, 2]", '{"completed": "all"}',
                                   '{"requests_sent": "many"}', '[' * 5000])
@pytest.mark.parametrize("command", ["run", "attack"])
def test_a_damaged_state_file_is_named(tmp_path, state, command):
    from toolduel.config import to_yaml
    from toolduel.duel.config import GameConfig

    if command == "attack":
        (tmp_path / "config.yaml").write_text("endpoint: http://127.0.0.1:9/v1\nmodel: m\n")
    else:
        (tmp_path / "config.yaml").write_text(to_yaml(GameConfig(world_budget="test")))
    (tmp_path / "state.json").write_text(state)
    one_line_error(run(command, "--resume", str(tmp_path)), "state.json")
    assert (tmp_path / "state.json").read_text() == state  # left as it was, for the user to look at


def test_the_report_names_a_report_path_that_is_a_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"round": 0, "accuracy": {"plain": 0.5}}\n')
    (tmp_path / "report").write_text("not a folder")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name, beside, line", [
    ("state.json", "metrics.jsonl", {"round": 0, "accuracy": {"plain": 0.5}}),  # a run folder
    ("summary.json", "results.jsonl", {"id": "a", "category": "plain", "valid": True}),  # an eval folder
])
def test_the_report_names_a_run_file_nested_too_deeply(tmp_path, name, beside, line):
    (tmp_path / beside).write_text(json.dumps(line) + "\n")
    (tmp_path / name).write_text('{"round": ' + "[" * 5000 + "]" * 5000 + "}")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert f"{name}: nested too deeply" in result.output, result.output
    assert (tmp_path / "report" / "report.html").is_file()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(max_size=40) | JSON.map(json.dumps), max_size=6))
def test_any_results_file_is_read_without_a_crash(tmp_path, lines):
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    for result in read_results(path):
        assert isinstance(result, dict) and "id" in result


def test_appending_cuts_a_torn_last_line_first(tmp_path):
    """A crash mid-write leaves a last line without its newline; the next append must not glue
    its record onto it (the glued line would be unreadable, and that record lost)."""
    from toolduel.run_files import append_jsonl

    path = tmp_path / "queries.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "que')
    append_jsonl(path, [{"key": "c"}])
    assert read_jsonl(path, strict=True) == [{"key": "a"}, {"key": "c"}]


def test_a_damaged_round_file_never_shrinks_the_pool_silently(tmp_path):
    from toolduel.run_files import CorruptFileError, rebuild_jsonl

    rounds = [tmp_path / "round_1.jsonl", tmp_path / "round_2.jsonl"]
    rounds[0].write_text('{"id": 1}\n{"id": 2}\n')
    rounds[1].write_text('{"id": 3}\n{"id": 4\n{"id": 5}\n')  # line 2 damaged
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n{"id": 4}\n{"id": 5}\n')
    with pytest.raises(CorruptFileError, match=r"round_2.jsonl: line 2: not valid JSON"):
        rebuild_jsonl(pool, rounds)
    assert pool.read_text().count("\n") == 5  # left as it was
    rounds[1].write_text('{"id": 3}\n{"id": 4}\n{"id": 5}\n')
    assert [r["id"] for r in rebuild_jsonl(pool, rounds)] == [1, 2, 3, 4, 5]


def test_an_evaluation_into_a_run_folder_is_refused_and_the_run_kept(tmp_path):
    from toolduel.config import to_yaml
    from toolduel.duel.config import GameConfig

    (tmp_path / "config.yaml").write_text(to_yaml(GameConfig(world_budget="test")))
    config = (tmp_path / "config.yaml").read_text()
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    one_line_error(run("eval", "--data", str(data), "--model", "m", "--out", str(tmp_path)), "holds a run or an attack")
    (tmp_path / "state.json").write_text('{"completed": []}')
    one_line_error(run("eval", "--data", str(data), "--model", "m", "--out", str(tmp_path), "--resume"),
                   "holds a run or an attack")
    assert (tmp_path / "config.yaml").read_text() == config


@pytest.mark.parametrize("flags, message", [
    (["--endpoint", "http://[::1"], "endpoint must be an http(s) URL"),
    (["--endpoint", "http://127.0.0.1:99999/v1"], "Port out of range"),
    (["--endpoint", "http://"], "with a host"),
    (["--endpoint", "http://127.0.0.1:8000/v1 x"], "without spaces or control characters"),
    (["--endpoint", "http://127.0.0.1:8000/v1\x00x"], "--endpoint: the value"),  # not even YAML
    (["--limit", "{"], "--limit: the value '{' is not valid YAML"),
    (["--endpoint", "http://127.0.0.1:8000/v1", "--timeout", "nan"], "timeout must be a positive number"),
])
def test_endpoint_settings_that_cannot_work_are_refused(tmp_path, flags, message):
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    one_line_error(run("eval", "--data", str(data), "--model", "m", *flags, "--out", str(tmp_path / "o")), message)
    assert not (tmp_path / "o").exists()


def test_messages_print_brackets_as_they_are(tmp_path):
    """A path or a hint holding brackets is text, not markup: no MarkupError, no eaten words."""
    one_line_error(run("eval", "--data", str(tmp_path / "x[/bold]y.jsonl"), "--model", "m"), "x[/bold]y.jsonl")
    data = write_records(tmp_path / "x[red]y.jsonl", [record("a")])  # markup would eat "[red]"
    result = run("eval", "--data", str(data), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"))
    one_line_error(result, "cannot load the model")
    assert f"from {data} ->" in " ".join(result.output.split())  # the progress line, printed as it is


def test_settings_refused_before_a_folder_is_written(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    one_line_error(run("run", "--use-vllm", "true", "--world-budget", "test", "--out", str(tmp_path / "r")), "vllm")
    assert not (tmp_path / "r").exists()
    one_line_error(run("attack", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--harvest-keep",
                       "everything", "--out", str(tmp_path / "a")), "harvest_keep must be successful or valid")


@pytest.mark.parametrize("budget", ["abc", "2.5"])
def test_a_new_budget_on_resume_is_checked_before_it_is_written(tmp_path, budget):
    (tmp_path / "config.yaml").write_text("endpoint: http://127.0.0.1:9/v1\nmodel: m\nmax_requests: 100\n")
    (tmp_path / "state.json").write_text('{"completed": ["attack", "harvest"], "requests_sent": 100}')
    before = (tmp_path / "config.yaml").read_text()
    one_line_error(run("attack", "--resume", str(tmp_path), "--max-requests", budget), "max_requests must be")
    assert (tmp_path / "config.yaml").read_text() == before


def test_a_state_file_that_is_a_link_loop_is_named_not_taken_for_absent(tmp_path):
    from toolduel.config import to_yaml
    from toolduel.duel.config import GameConfig

    (tmp_path / "config.yaml").write_text(to_yaml(GameConfig(world_budget="test")))
    (tmp_path / "state.json").symlink_to(tmp_path / "state.json")
    one_line_error(run("run", "--resume", str(tmp_path)), "state.json")


@pytest.mark.parametrize("name", ["queries.jsonl", "judge_cache.jsonl"])
def test_a_ledger_or_judge_cache_that_is_a_link_loop_is_named_not_taken_for_absent(tmp_path, name):
    """Taken for absent, the attack would be played again from nothing, then fail on its first write."""
    from toolduel.blackbox.ledger import latest_records
    from toolduel.config import ConfigError
    from toolduel.referee.judge import Judge

    (tmp_path / name).symlink_to(tmp_path / name)
    with pytest.raises(ConfigError, match=f"{name} cannot be read"):
        if name == "queries.jsonl":
            latest_records(tmp_path / name)
        else:
            Judge(model=None, cache_path=tmp_path / name)


def test_resuming_an_evaluation_with_another_model_is_refused(tmp_path):
    data = write_records(tmp_path / "s.jsonl", [record("a")])
    with FakeOpenAIServer() as server:
        out = tmp_path / "o"
        assert run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "one",
                   "--out", str(out)).exit_code == 0
        results = (out / RESULTS).read_text()
        one_line_error(run("eval", "--data", str(data), "--endpoint", server.base_url, "--model", "two",
                           "--out", str(out), "--resume"), "holds answers of one at")
    assert (out / RESULTS).read_text() == results


def test_a_record_nested_hundreds_of_levels_deep_is_named_on_load(tmp_path):
    """It would load, be paid for, then break the writing of its result (a recursion error)."""
    deep: object = "x"
    for _ in range(700):
        deep = {"k": deep}
    deep_record = record("deep")
    deep_record["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"city": deep})
    data = write_records(tmp_path / "s.jsonl", [record("a"), deep_record])
    with pytest.raises(DataError, match=r"s.jsonl:2: nests lists and objects more than 32 levels deep"):
        load_samples(str(data))


@pytest.mark.parametrize("flags, message", [
    (["--port", "99999"], "--port must be a port number"),
    (["--dtype", "float8"], "--dtype must be auto, float32, bfloat16 or float16"),
    (["--device", "cuda"], "no CUDA GPU is visible here"),
])
def test_serve_settings_that_cannot_work_are_one_line_errors(flags, message):
    import torch

    if "--device" in flags and torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda can work here")
    result = CliRunner().invoke(app, ["serve", "smollm2", *flags])
    one_line_error(result, message)


def test_an_output_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    blocked = str(tmp_path / "file" / "below")  # a folder cannot be made under a file
    one_line_error(run("eval", "--data", "world:plain", "--limit", "1", "--model", "m", "--out", blocked),
                   "cannot be written")
    one_line_error(run("run", "--world-budget", "test", "--out", blocked), "cannot be written")
    result = CliRunner().invoke(app, ["world", "sample", "--n", "2", "--out", "/dev/full"])
    assert result.exit_code == 2 and "cannot be written" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("flag", ["--fc-model", "--query-model"])
def test_a_player_that_is_neither_here_nor_on_the_hub_is_one_line(tmp_path, monkeypatch, flag):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # for a hub library imported from now on; the one already imported:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    for source in (str(tmp_path / "nowhere"), "no-such-org/no-such-model"):
        result = run("run", "--out", str(tmp_path / source.replace("/", "_")), "--world-budget", "test", flag, source)
        one_line_error(result, f"{flag[2:].replace('-', '_')} {source} cannot be loaded")


def test_a_resumed_run_whose_checkpoint_is_gone_or_empty_says_so(tmp_path):
    from toolduel.config import to_yaml
    from toolduel.duel.config import GameConfig

    (tmp_path / "config.yaml").write_text(to_yaml(GameConfig(world_budget="test", out=str(tmp_path))))
    (tmp_path / "state.json").write_text('{"completed": ["0:players"], "fc_path": "rounds/round_0/fc_model", '
                                         '"query_path": "rounds/round_0/query_model"}')
    one_line_error(run("run", "--resume", str(tmp_path)), "names 'rounds/round_0/fc_model' as fc_path")
    (tmp_path / "rounds/round_0/fc_model").mkdir(parents=True)  # there, but its weights are gone
    one_line_error(run("run", "--resume", str(tmp_path)), "fc_model cannot be loaded as FC model")


@pytest.mark.parametrize("template, message", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "within 3 s"),
    ("{% set s = namespace(v='x') %}{% for i in range(60) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}",
     "(more than 2 GB|within 3 s)"),  # past the memory bound in about a second (later on a loaded machine)
])
def test_a_chat_template_that_loops_or_grows_without_end_is_refused_at_load(tiny_tokenizer, monkeypatch, template,
                                                                            message):
    from toolduel import chat_templates
    from toolduel.config import ConfigError
    from toolduel.prompts import ChatRenderer

    monkeypatch.setattr(chat_templates, "TEMPLATE_SECONDS", 3.0)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"the chat template is refused: .*{message}"):
        ChatRenderer(tiny_tokenizer, chat_template=template)
    assert time.monotonic() - started < 10
    assert ChatRenderer(tiny_tokenizer).prompt([{"role": "user", "content": "hi"}], [])  # an honest one renders
