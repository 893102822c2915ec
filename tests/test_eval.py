"""`toolduel eval` end to end: a tiny model built in-process, and a fake OpenAI-compatible server."""

import json

import pytest
from typer.testing import CliRunner

from toolduel.cli import app
from toolduel.evaluate import latest_by_id, read_results, summarize
from toolduel.run_files import RESULTS, SUMMARY

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                            "parameters": {"type": "object", "required": ["city"],
                                                           "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time of a city.",
                                         "parameters": {"type": "object", "required": ["city"],
                                                        "properties": {"city": {"type": "string"}}}}}


def _openai_record(id_, query, gold_city=None, tool="get_weather"):
    answer = {"role": "assistant", "content": "I cannot help with that."}
    if gold_city is not None:
        answer = {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": tool, "arguments": json.dumps({"city": gold_city})}}]}
    return {"id": id_, "tools": [WEATHER, TIME], "messages": [{"role": "user", "content": query}, answer]}


@pytest.fixture
def samples_file(tmp_path):
    # The fake server calls the first offered tool named in the query, with key=value arguments.
    records = [
        _openai_record("right", "get_weather city=Paris", "Paris"),        # right call -> valid
        _openai_record("wrong-value", "get_weather city=Rome", "Paris"),   # wrong value
        _openai_record("wrong-function", "get_time city=Oslo", "Oslo"),    # called get_time, gold get_weather
        _openai_record("no-call", "what is the capital of Peru?"),         # answers in words; gold: no call
        _openai_record("did-not-call", "how warm is Lima?", "Lima"),       # answers in words; gold: a call
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _run(*args):
    result = CliRunner().invoke(app, ["eval", *args, "--no-progress"])
    return result


def test_eval_against_endpoint_scores_every_sample(fake_openai_server, samples_file, tmp_path):
    out = tmp_path / "run"
    result = _run("--data", str(samples_file), "--endpoint", fake_openai_server.base_url, "--model", "fake",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in read_results(out / RESULTS)}
    assert set(records) == {"right", "wrong-value", "wrong-function", "no-call", "did-not-call"}
    verdicts = {i: (r["valid"], r["verdict"]["kind"]) for i, r in records.items()}
    assert verdicts == {
        "right": (True, "ok"),
        "wrong-value": (False, "wrong_value"),
        "wrong-function": (False, "wrong_function"),
        "no-call": (True, "ok"),
        "did-not-call": (False, "did_not_call"),
    }
    assert records["right"]["parsed_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert records["right"]["prompt"] == [{"role": "user", "content": "get_weather city=Paris"}]
    summary = json.loads((out / SUMMARY).read_text())
    assert (summary["n"], summary["correct"], summary["accuracy"]) == (5, 2, 0.4)
    assert summary["error_kinds"] == {"wrong_value": 1, "wrong_function": 1, "did_not_call": 1}
    assert sum(summary["error_types"].values()) == 3
    assert "accuracy" in result.output and "40.0%" in result.output  # the terminal table


def test_an_endpoint_without_a_model_list_needs_model_named(fake_openai_server, samples_file, tmp_path):
    """With no --model, eval asks the server which model it serves; a server that cannot say
    (the fake lists none) ends in one line asking for --model, before anything is written."""
    result = _run("--data", str(samples_file), "--endpoint", fake_openai_server.base_url, "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "did not list the served ones" in result.output and "--model" in result.output
    assert not (tmp_path / "x").exists()


def test_failed_requests_are_recorded_then_resumed(fake_openai_server, samples_file, tmp_path):
    out = tmp_path / "run"
    # every request for the Lima query fails with HTTP 500, whatever the retries
    fake_openai_server.faults = lambda index, body: "500" if "Lima" in json.dumps(body) else None
    result = _run("--data", str(samples_file), "--endpoint", fake_openai_server.base_url, "--model", "fake",
                  "--out", str(out), "--max-concurrency", "2")
    assert result.exit_code == 0, result.output
    records = read_results(out / RESULTS)
    failed = [r for r in records if r.get("generation_error")]
    assert [r["id"] for r in failed] == ["did-not-call"] and "500" in failed[0]["generation_error"]
    summary = json.loads((out / SUMMARY).read_text())
    assert (summary["n"], summary["failed_requests"]) == (4, 1)  # left out of accuracy, not lost

    fake_openai_server.faults = None
    fake_openai_server.reset()
    result = _run("--out", str(out), "--resume", "--data", str(samples_file),
                  "--endpoint", fake_openai_server.base_url, "--model", "fake")
    assert result.exit_code == 0, result.output
    assert fake_openai_server.request_count == 1  # only the failed sample is asked again
    records = read_results(out / RESULTS)  # appended to, never rewritten: the failure stays on record
    assert [r["id"] for r in records if r.get("generation_error")] == ["did-not-call"]
    assert sorted(r["id"] for r in latest_by_id(records)) == sorted(["right", "wrong-value", "wrong-function",
                                                                     "no-call", "did-not-call"])
    assert json.loads((out / SUMMARY).read_text())["failed_requests"] == 0


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / RESULTS
    path.write_text(json.dumps({"id": "a"}) + "\n" + '{"id": "b", "raw_out')  # killed mid-write
    assert read_results(path) == [{"id": "a"}]


def test_eval_with_a_tiny_local_model(tiny_qwen2, tiny_tokenizer, samples_file, tmp_path):
    model_dir = tmp_path / "tiny"
    tiny_qwen2.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    result = _run("--data", str(samples_file), "--model", str(model_dir), "--out", str(out),
                  "--max-new-tokens", "8", "--batch-size", "2", "--limit", "3")
    assert result.exit_code == 0, result.output
    records = read_results(out / RESULTS)
    assert [r["id"] for r in records] == ["right", "wrong-value", "wrong-function"]
    assert all(isinstance(r["raw_output"], str) and r["verdict"] is not None for r in records)
    # the summary is exactly what the records say
    assert json.loads((out / SUMMARY).read_text())["per_category"] == summarize(records)["per_category"]


@pytest.mark.parametrize("args, message", [
    (["--data", "bfcl:nonsense"], "unknown BFCL category 'nonsense'"),
    (["--data", "missing.jsonl"], "neither bfcl"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--endpoint", "http://127.0.0.1:9/v1"], "name it with --model"),  # no server to list its model
])
def test_bad_settings_give_one_line_errors(args, message):
    result = _run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_record_is_named_or_skipped(fake_openai_server, samples_file, tmp_path):
    with samples_file.open("a") as f:
        f.write("{broken\n")
    result = _run("--data", str(samples_file), "--endpoint", fake_openai_server.base_url, "--model", "fake",
                  "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "samples.jsonl:6" in result.output
    result = _run("--data", str(samples_file), "--endpoint", fake_openai_server.base_url, "--model", "fake",
                  "--out", str(tmp_path / "b"), "--skip-bad")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / SUMMARY).read_text())["skipped_records"] == 1
