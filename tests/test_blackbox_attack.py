"""The black-box attack (`toolduel attack`) against the fake OpenAI server, faults and all.

The query model is the world's "test" build (seconds); the seeds ask for calls without
arguments, so that the untrained query model's queries pass the rule check and reach the
endpoint. The fake FC model answers the gold call when the query's checksum is odd.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer, last_user_message
from processes import kill_when
from typer.testing import CliRunner

from toolduel.blackbox.config import BlackBoxConfig
from toolduel.blackbox.ledger import BUDGET_SPENT, QueryLedger, RequestBudget, latest_records, query_key
from toolduel.cli import app
from toolduel.config import ConfigError, load_config
from toolduel.models.base import Generation, GenerationConfig
from toolduel.run_files import read_jsonl, seeded_draw
from toolduel.schema import GoldCall, Sample, Tool
from toolduel.world.lexicon import world_lexicon

CONFIGS = Path(__file__).parent.parent / "configs"
KEY_ENV = "TOOLDUEL_TEST_KEY"
TOOL_NAMES = ["refresh_cache", "list_files", "ping_server", "clear_history"]
SEEDS = [Sample(id=f"seed-{i}", tools=[Tool(name, f"Does {name.replace('_', ' ')}.", {"type": "object",
                                                                                      "properties": {}})],
                messages=[{"role": "user", "content": f"please {name.replace('_', ' ')}"}], gold=[GoldCall(name, {})])
         for i, name in enumerate(TOOL_NAMES)]
TINY = ["--model", "fake-fc", "--no-progress", "--world-budget", "test", "--attack-steps", "2",
        "--attack-prompts-per-step", "2", "--num-generations", "2", "--max-query-tokens", "12", "--fc-samples", "2",
        "--harvest-seeds", "4", "--batch-size", "4", "--save-steps", "1", "--api-key-env", KEY_ENV,
        "--timeout", "1", "--max-retries", "2", "--backoff-base", "0.01"]


@pytest.fixture(scope="module")
def world_cache(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "toolduel-cache"
    os.environ.setdefault("TOOLDUEL_CACHE", str(cache))  # the same cache as test_game's, when both run
    from toolduel.training.warm_start import ensure_world_models

    ensure_world_models("test", progress=False)
    return os.environ["TOOLDUEL_CACHE"]


@pytest.fixture
def seeds_file(tmp_path, world_cache, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_CACHE", world_cache)
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in SEEDS))
    return path


def fc_responder(body: dict) -> dict:
    """Right (the offered tool, no arguments) for an odd checksum of the query, else a refusal."""
    if zlib.crc32(last_user_message(body).encode()) % 2:
        call = {"id": "call_0", "type": "function",
                "function": {"name": body["tools"][0]["function"]["name"], "arguments": "{}"}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": "I cannot help with that."}


def judged_query(body: dict) -> str:
    return body["messages"][-1]["content"].split("<<<\n")[1].split("\n>>>")[0]


def fc_and_judge_responder(body: dict) -> dict:
    """The FC model (offered tools) as above; the judge (no tools) rejects an odd checksum."""
    if "tools" in body:
        return fc_responder(body)
    verdict = "invalid" if zlib.crc32(judged_query(body).encode()) % 2 else "valid"
    return {"role": "assistant", "content": json.dumps({"verdict": verdict, "reason": "checksum"})}


def attack(out: Path, server: FakeOpenAIServer, seeds_file: Path, *args: str):
    return CliRunner().invoke(app, ["attack", "--endpoint", server.base_url, "--seeds", str(seeds_file),
                                    "--out", str(out), *TINY, *args])


def by_key(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record["key"], []).append(record)
    return grouped


def assert_each_query_scored_once_or_failed(records: list[dict]) -> None:
    for key, history in by_key(records).items():
        statuses = [r["status"] for r in history]
        assert statuses.count("scored") <= 1, f"{key} scored twice"
        assert "scored" not in statuses[:-1], f"{key} has a record after its score"
        for record in history:
            if record["status"] == "failed":
                assert record["error"], f"{key} failed without a reason"
            else:
                assert record["error"] is None
                if record["valid"]:  # k answers, each either checked or a recorded failure
                    assert len(record["verdicts"]) + len(record["fc_errors"]) == 2
                    assert record["fc_success"] == sum(v["valid"] for v in record["verdicts"]) / len(record["verdicts"])
                    assert record["attack_success"] == (record["fc_success"] < 1.0)


# --- faults ----------------------------------------------------------------------------------


def test_faults_leave_every_query_scored_once_or_failed_with_its_reason(seeds_file, tmp_path, monkeypatch):
    attacked = [s.tools[0].name for s in seeded_draw(SEEDS, 4, "attack", 0)]
    broken, bad_shape = attacked[0], next(name for name in attacked if name != attacked[0])
    transient = ["500", "429:0.01", "sleep:3", "truncated", "disconnect", "503"]  # retried until they pass

    def faults(index, body):
        if index < len(transient):
            return transient[index]
        name = body["tools"][0]["function"]["name"]
        return "malformed_json" if name == broken else "bad_tool_calls" if name == bad_shape else None

    asked: list[str] = []  # every query the reward was given, to check that none is lost
    original_score = QueryLedger.score

    def spy(self, seeds, queries, phase, step=None):
        asked.extend(query_key(seed.id, query) for seed, query in zip(seeds, queries))
        return original_score(self, seeds, queries, phase, step)

    monkeypatch.setattr(QueryLedger, "score", spy)
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder, faults=faults) as server:
        result = attack(out, server, seeds_file)
        requests = server.request_count

    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "queries.jsonl")
    assert_each_query_scored_once_or_failed(records)
    assert set(asked) == {r["key"] for r in records}  # none lost
    assert len(asked) == 2 * 2 * 2 + 4  # 2 steps of 2 seeds x 2 queries, then 4 harvested
    assert requests == sum(r["attempts"] for r in records)  # every HTTP request (retries too) is on record
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == ["attack", "harvest"] and state["stopped"] is None
    assert state["requests_sent"] == sum(r["requests"] for r in records) == requests  # retries paid for too
    failed = [r for r in records if r["status"] == "failed"]
    assert any("malformed JSON" in r["error"] for r in failed)  # the broken seed's answers
    assert any(r["error"].startswith("wrong shape: choices[0].message.tool_calls") for r in failed)
    log = read_jsonl(out / "attack_log.jsonl")
    assert [s["step"] for s in log] == [1, 2] and sum(s["queries"] for s in log) == 8
    assert all(0 < s["seconds"] < 600 for s in log)  # each step timed: rollouts, rewards, update
    assert all(0 < s["referee_seconds"] <= s["seconds"] for s in log)  # of which scoring the queries
    latest = {r["key"]: r for r in records}
    winners = {k for k, r in latest.items() if r["status"] == "scored" and r["valid"] and r["attack_success"]}
    pool = read_jsonl(out / "pool.jsonl")
    assert {p["id"] for p in pool} == {latest[k]["id"] for k in winners}  # the adversarial set: every win, once
    for record in pool:
        assert record["sample"]["messages"][-1]["content"] == record["query"] and record["attack_success"]
    metrics = read_jsonl(out / "metrics.jsonl")[0]
    assert metrics["pool_size"] == len(pool)
    assert metrics["failed"] == sum(r["status"] == "failed" for r in latest.values()) > 0
    assert (out / "report" / "report.html").exists() and (out / "query_model" / "config.json").exists()
    from toolduel.report import build_report

    assert build_report(out).problems == []  # the report reads the attack folder as it is


def test_an_endpoint_that_stays_down_stops_the_run_with_a_clear_message(seeds_file, tmp_path):
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder, faults=lambda index, body: "500") as server:
        result = attack(out, server, seeds_file, "--failure-limit", "2", "--max-retries", "1")

    assert result.exit_code == 1, result.output
    assert "got no answer from the endpoint" in result.output and "HTTP 500" in result.output
    assert f"toolduel attack --resume {out}" in result.output
    records = read_jsonl(out / "queries.jsonl")
    sent = [r for r in records if r["requests"]]
    assert sent and all(r["status"] == "failed" and r["error"].startswith("HTTP 500") for r in sent)
    state = json.loads((out / "state.json").read_text())
    assert state["stopped"] == "endpoint" and "attack" not in state["completed"]
    assert [s["step"] for s in read_jsonl(out / "attack_log.jsonl")] == [1]  # stopped after the first step
    assert (out / "trainer" / "checkpoint-1" / "trainer_state.json").exists()  # what --resume continues


# --- budget, resume --------------------------------------------------------------------------


def test_the_request_budget_stops_the_run_cleanly_and_can_be_raised(seeds_file, tmp_path):
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder) as server:
        result = attack(out, server, seeds_file, "--max-requests", "5")
        assert result.exit_code == 0, result.output
        assert "the request budget of 5 is spent" in result.output and "--max-requests N" in result.output
        state = json.loads((out / "state.json").read_text())
        records = read_jsonl(out / "queries.jsonl")
        assert state["stopped"] == "budget" and state["requests_sent"] == 4  # two queries of k=2; 1 left is too few
        assert server.request_count == 4 == sum(r["requests"] for r in records)
        assert any(r["error"] == BUDGET_SPENT for r in records)  # generated, not paid for: on record, with why
        assert (out / "pool.jsonl").exists() and (out / "report" / "report.html").exists()

        (out / "state.json").write_text(json.dumps(state | {"requests_sent": 0}))  # the state's count lost
        again = CliRunner().invoke(app, ["attack", "--resume", str(out), "--no-progress"])
        assert again.exit_code == 0, again.output
        assert server.request_count == 4  # the ledger's count stood: nothing sent past the budget

        resumed = CliRunner().invoke(app, ["attack", "--resume", str(out), "--max-requests", "1000", "--no-progress"])
        assert resumed.exit_code == 0, resumed.output
        assert resumed.output.count("done:") == 1
        state = json.loads((out / "state.json").read_text())
        records = read_jsonl(out / "queries.jsonl")
        assert state["completed"] == ["attack", "harvest"] and state["stopped"] is None
        assert server.request_count == state["requests_sent"] == sum(r["requests"] for r in records)
        assert_each_query_scored_once_or_failed(records)
    assert "max_requests: 1000" in (out / "config.yaml").read_text()


def test_a_retry_is_a_request_the_budget_must_pay_for(seeds_file, tmp_path):
    """Five requests: two queries of k=2 take four; the first two answers fail once each, the
    first retry takes the fifth request, the second is not made: the server never sees a sixth."""
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder, faults=["503", "503"]) as server:
        result = attack(out, server, seeds_file, "--max-requests", "5", "--backoff-base", "0.01")
        assert result.exit_code == 0, result.output
        records = read_jsonl(out / "queries.jsonl")
        assert server.request_count == 5 == json.loads((out / "state.json").read_text())["requests_sent"]
        assert sum(r["requests"] for r in records) == 5 == sum(r["attempts"] for r in records)
        assert "not retried: the request budget is spent" in json.dumps(records)  # the answer's error


def test_the_attack_takes_the_trainer_settings_of_the_duel(seeds_file, tmp_path):
    """--query-lora, --dtype and --gradient-accumulation-steps reach the query model's trainer, as in `toolduel run`."""
    import torch

    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder) as server:
        result = attack(out, server, seeds_file, "--query-lora", "true", "--lora-rank", "4", "--dtype", "bfloat16",
                        "--gradient-accumulation-steps", "2", "--harvest-seeds", "0")
    assert result.exit_code == 0, result.output
    adapter = json.loads((out / "query_model" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and not (out / "query_model" / "model.safetensors").exists()  # an adapter, not a model
    checkpoint = max((out / "trainer").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    arguments = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert (arguments.bf16, arguments.gradient_accumulation_steps, arguments.per_device_train_batch_size) == (True, 2, 2)


def test_a_killed_attack_resumes_without_losing_or_repeating_a_query(seeds_file, tmp_path):
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder, faults=lambda index, body: "sleep:0.3") as server:
        command = [sys.executable, "-m", "toolduel.cli", "attack", "--endpoint", server.base_url, "--seeds",
                   str(seeds_file), "--out", str(out), *TINY, "--attack-steps", "6", "--timeout", "10",
                   "--max-concurrency", "4"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        kill_when(process, lambda: len(read_jsonl(out / "attack_log.jsonl")) >= 2 and (out / "trainer").exists(),
                  timeout=240, poll=0.05)  # once two steps are checkpointed
        assert "attack" not in json.loads((out / "state.json").read_text())["completed"]  # killed mid-attack
        before = (out / "queries.jsonl").read_text().splitlines()
        asked_before = server.request_count
        scored_before = {json.loads(line)["query"] for line in before if json.loads(line)["status"] == "scored"}
        with (out / "attack_log.jsonl").open("a") as log:
            log.write('{"step": null}\n')  # a hand-edited line: said and left out, not a TypeError

        result = CliRunner().invoke(app, ["attack", "--resume", str(out), "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "attack log" in result.output
        after = (out / "queries.jsonl").read_text().splitlines()
        assert after[:len(before)] == before  # nothing lost: the ledger only grew
        records = [json.loads(line) for line in after]
        assert_each_query_scored_once_or_failed(records)
        asked_again = Counter(last_user_message(r.body) for r in server.requests[asked_before:])
        assert not scored_before & set(asked_again)  # a query scored before the kill was not asked again
        assert [s["step"] for s in read_jsonl(out / "attack_log.jsonl")] == [1, 2, 3, 4, 5, 6]  # each step once
        state = json.loads((out / "state.json").read_text())
        assert state["completed"] == ["attack", "harvest"]
        assert sum(r["requests"] for r in records) <= state["requests_sent"]  # counted before sending
        assert len(list((out / "trainer").glob("checkpoint-*"))) == 1  # only the newest is kept
        assert 2 <= server.max_in_flight <= 4  # concurrent, within max_concurrency (k=2 answers x 2 queries)


# --- secrets ---------------------------------------------------------------------------------


def test_the_api_key_reaches_the_server_but_no_file_or_log(seeds_file, tmp_path, monkeypatch, caplog):
    secret = "sk-test-5e3c9d7a1f0b42e8"
    monkeypatch.setenv(KEY_ENV, secret)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "attack"
    # the fake server echoes the key in its 401 bodies, like a careless server
    faults = lambda index, body: "401" if zlib.crc32(last_user_message(body).encode()) % 3 == 0 else None  # noqa: E731
    with FakeOpenAIServer(responder=fc_and_judge_responder, faults=faults) as server:
        result = attack(out, server, seeds_file, "--judge-model", "judge", "--judge-endpoint", server.base_url,
                        "--judge-api-key-env", KEY_ENV)
        headers = [r.headers.get("Authorization") for r in server.requests]

    assert result.exit_code == 0, result.output
    assert set(headers) == {f"Bearer {secret}"}  # the key was used...
    assert secret not in result.output and secret not in caplog.text  # ...and never written out
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert not [p for p in files if secret.encode() in p.read_bytes()]
    records = read_jsonl(out / "queries.jsonl")
    assert any(r["requests"] for r in records) and any("judge: checksum" in r["reasons"] for r in records)
    assert any("Bearer ***" in (r["error"] or "") for r in records)  # redacted, not lost


# --- the judge in the attack -----------------------------------------------------------------


def test_an_endpoint_judge_gates_queries_and_is_asked_once_per_pair(seeds_file, tmp_path):
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_and_judge_responder) as server:
        result = attack(out, server, seeds_file, "--judge-model", "judge", "--judge-endpoint", server.base_url)
        judge_requests = [r for r in server.requests if "tools" not in r.body]
        fc_requests = len(server.requests) - len(judge_requests)

    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "queries.jsonl")
    cache = read_jsonl(out / "judge_cache.jsonl")
    asked = [last_user_message(r.body) for r in judge_requests]
    assert len(asked) == len(set(asked)) == len(cache)  # each (query, gold) pair asked once
    rejected = [r for r in records if r["reasons"] == ["judge: checksum"]]
    assert rejected and all(not r["valid"] and r["requests"] == 0 for r in rejected)  # never sent to the FC model
    assert fc_requests == sum(r["requests"] for r in records)
    state = json.loads((out / "state.json").read_text())
    assert state["requests_sent"] == fc_requests + len(judge_requests)  # the budget counts both endpoints


# --- the ledger and settings, without training -----------------------------------------------


class CountingFC:
    name = "counting"
    max_concurrency = 4

    def __init__(self, fail: set[str] = frozenset()):
        self.asked: list[str] = []
        self.fail = set(fail)

    def generate(self, conversations, tools, config=None):
        query = conversations[0][-1]["content"]
        self.asked.extend(c[-1]["content"] for c in conversations)
        if query in self.fail:
            failure = Generation("", error="HTTP 503: busy (after 3 attempts)", meta={"attempts": 3})
            return [failure] * len(conversations)
        return [Generation("I cannot help.", meta={"attempts": 1}) for _ in conversations]


def test_the_ledger_scores_repeats_once_and_a_later_success_supersedes_a_failure(tmp_path):
    fc = CountingFC(fail={"please refresh the cache"})
    path = tmp_path / "queries.jsonl"
    ledger = QueryLedger(path, fc, k=2, generation=GenerationConfig(), lexicon=world_lexicon())
    seed = SEEDS[0]
    queries = ["please refresh the cache", "refresh it now", "refresh it now", "hm"]

    outcomes = ledger.score([seed] * 4, queries, phase="attack", step=1)
    assert [(o.valid, o.failed) for o in outcomes] == [(True, True), (True, False), (True, False), (False, False)]
    assert sorted(fc.asked) == ["please refresh the cache"] * 2 + ["refresh it now"] * 2  # the repeat: asked once
    fc.fail.clear()
    again = QueryLedger(path, fc, k=2, generation=GenerationConfig(), lexicon=world_lexicon())  # as after a resume
    again.score([seed] * 2, ["refresh it now", "please refresh the cache"], phase="attack", step=2)
    assert fc.asked.count("refresh it now") == 2 and fc.asked.count("please refresh the cache") == 4
    records = read_jsonl(path)
    assert sorted((r["query"], r["status"]) for r in records) == [
        ("hm", "scored"), ("please refresh the cache", "failed"), ("please refresh the cache", "scored"),
        ("refresh it now", "scored")]  # "hm": too short, scored invalid without a request
    assert_each_query_scored_once_or_failed(records)
    assert records[[r["status"] for r in records].index("failed")]["attempts"] == 6  # 2 answers x 3 attempts


def test_a_ledger_line_that_is_no_record_is_left_out_and_said(tmp_path):
    """A hand-edited or damaged ledger: each bad line is named and left out, and none stands in
    for the genuine record of its key ("valid": "false" was read as valid)."""
    path = tmp_path / "queries.jsonl"
    ledger = QueryLedger(path, CountingFC(), k=2, generation=GenerationConfig(), lexicon=world_lexicon())
    ledger.score([SEEDS[0]] * 2, ["refresh it now", "hm"], phase="attack", step=1)
    genuine = latest_records(path)
    refresh = next(r for r in genuine.values() if r["query"] == "refresh it now")
    assert refresh["valid"] is True
    tampered = [{"valid": "false"}, {"reasons": 5}, {"fc_success": "0.5"}, {"seed_id": ["a"]}, {"step": "3"},
                {"query": "refresh it later"}, {"phase": None}]
    with path.open("a") as ledger_file:
        ledger_file.write("not json\n[1, 2]\n")
        for change in tampered:
            ledger_file.write(json.dumps(refresh | change) + "\n")
    problems = []
    assert latest_records(path, on_problem=problems.append) == genuine
    assert len(problems) == 2 + len(tampered), problems
    assert any("valid should be true or false" in p for p in problems)
    assert any("its key is not its seed's" in p for p in problems)  # another query under this key
    assert all(p.startswith(("line ", "record ")) for p in problems)


def test_the_budget_pays_for_whole_queries_only():
    saved = []
    budget = RequestBudget(limit=7, used=2, save=saved.append)
    assert budget.take_groups(4, 2) == 2 and budget.remaining == 1  # 2 queries of k=2 fit in the 5 left
    assert budget.take_groups(1, 2) == 0 and budget.take(5) == 1 and budget.remaining == 0
    assert saved == [6, 7]  # saved before the requests go out
    assert RequestBudget(None).take_groups(1000, 4) == 1000


def test_the_shipped_attack_config_loads():
    config = load_config(BlackBoxConfig, CONFIGS / "attack-endpoint.yaml")
    assert config.endpoint == "http://127.0.0.1:8000/v1" and config.api_key_env == "OPENAI_API_KEY"
    assert config.attack_steps == 20
    first_line = (CONFIGS / "attack-endpoint.yaml").read_text().splitlines()[0]
    assert first_line.startswith("# ") and "toolduel attack --config configs/attack-endpoint.yaml" in first_line


SERVED = {"endpoint": "http://127.0.0.1:8000/v1", "model": "m"}


@pytest.mark.parametrize("settings, message", [
    ({}, "endpoint is required"),
    ({"endpoint": "localhost:8000", "model": "m"}, "endpoint must be an http"),
    (SERVED | {"api_key_env": "sk-abc123"}, "NAME of an environment variable"),  # the key itself, pasted
    (SERVED | {"max_requests": 1, "fc_samples": 2}, "max_requests must be at least fc_samples"),
    (SERVED | {"num_generations": 1}, "num_generations must be at least 2"),  # checked by the duel's config
    (SERVED | {"judge_endpoint": "http://127.0.0.1:9/v1"}, "judge_endpoint needs judge_model"),
    (SERVED | {"attack_surface": "query,tools"}, "needs seeds: world:train"),
])
def test_bad_attack_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as error:
        BlackBoxConfig(**settings)
    assert "\n" not in str(error.value) and "sk-abc123" not in str(error.value)


def test_without_model_the_attack_asks_the_server_and_names_what_failed(tmp_path):
    """No --model: the one model the endpoint lists; no server to ask is one line, no folder."""
    out = tmp_path / "attack"
    result = CliRunner().invoke(app, ["attack", "--endpoint", "http://127.0.0.1:9/v1", "--out", str(out)])
    assert result.exit_code == 2 and "did not list the served ones" in result.output
    assert "--model" in result.output and not out.exists()


def test_resume_refuses_new_settings(tmp_path):
    result = CliRunner().invoke(app, ["attack", "--resume", str(tmp_path), "--attack-steps", "3"])
    assert result.exit_code == 2 and "only --max-requests may be given" in result.output
    result = CliRunner().invoke(app, ["attack", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "holds no attack to resume" in result.output
    result = CliRunner().invoke(app, ["attack", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                                      "--attack-stepz", "3"])
    assert result.exit_code == 2 and "unknown option '--attack-stepz'" in result.output


def test_an_attack_resumed_over_an_emptied_ledger_keeps_its_findings(seeds_file, tmp_path):
    """The adversarial set is rebuilt from the ledger on every resume; a ledger emptied (or cut)
    since must not rebuild it smaller: the resume stops in one line and the set stays."""
    out = tmp_path / "attack"
    with FakeOpenAIServer(responder=fc_responder) as server:
        assert attack(out, server, seeds_file, "--harvest-keep", "valid").exit_code == 0
    pool = (out / "pool.jsonl").read_text()
    assert pool.count("\n") > 0
    (out / "queries.jsonl").write_text("")
    result = CliRunner().invoke(app, ["attack", "--resume", str(out), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "pool.jsonl holds" in " ".join(result.output.split()) and "queries.jsonl" in result.output
    assert (out / "pool.jsonl").read_text() == pool


class ToolRecordingFC(CountingFC):
    """Refuses every query, and keeps the tool names each request offered."""

    def __init__(self):
        super().__init__()
        self.offered: list[list[str]] = []

    def generate(self, conversations, tools, config=None):
        self.offered += [[t.name for t in offered] for offered in tools]
        return super().generate(conversations, tools, config)


def test_with_the_tool_surface_the_endpoint_answers_the_edited_list_and_the_set_keeps_it(tmp_path, monkeypatch):
    """--attack-surface query,tools: one query asked under two moves is two ledger records; the
    endpoint is offered the edited tools; the adversarial set rebuilt from the ledger keeps them."""
    from toolduel.blackbox.run import start_attack, write_findings
    from toolduel.prompts import STYLE_KEY
    from toolduel.referee.outcome import TOOL_MOVE_KEY
    from toolduel.specs import specified
    from toolduel.world.generator import generate_samples

    monkeypatch.setattr("toolduel.report.build_report", lambda folder: None)
    seed = next(s for s in generate_samples(20, seed=2, kinds=("one_call",), phrasings=("plain",)))
    run = start_attack(BlackBoxConfig(**SERVED, out=str(tmp_path / "attack"), seeds="world:train",
                                      attack_surface="query,tools", harvest_keep="valid"))
    fc = ToolRecordingFC()
    ledger = QueryLedger(run.dir / "queries.jsonl", fc, k=1, generation=GenerationConfig(), lexicon=world_lexicon())
    asked = [specified(seed, **{STYLE_KEY: "terse", TOOL_MOVE_KEY: move}) for move in ("masked_names", "unchanged")]
    outcomes = ledger.score(asked, [seed.query] * 2, phase="attack", step=1)
    assert [(o.valid, o.tool_move, o.style) for o in outcomes] == [(True, "masked_names", "terse"),
                                                                    (True, "unchanged", "terse")]
    assert fc.offered[1] == [t.name for t in seed.tools] and fc.offered[0] != fc.offered[1]
    assert all(name.startswith("tool_") for name in fc.offered[0])
    records = read_jsonl(run.dir / "queries.jsonl")
    assert len({r["key"] for r in records}) == 2 and [r["tool_move"] for r in records] == ["masked_names", "unchanged"]

    write_findings(run, [seed], lambda line: None)
    pool = {r["tool_move"]: r for r in read_jsonl(run.dir / "pool.jsonl")}
    assert [t["function"]["name"] for t in pool["masked_names"]["sample"]["tools"]] == fc.offered[0]
    assert pool["masked_names"]["sample"]["gold"][0] == records[0]["sample"]["gold"][0]
    assert pool["unchanged"]["sample"]["tools"] == records[1]["sample"]["tools"] == seed.to_dict()["tools"]


def test_edits_the_query_model_writes_reach_the_endpoint_and_the_adversarial_set(tmp_path, monkeypatch):
    """--tool-edits written: the endpoint is offered the list the completion's edits make, the
    request alone is sent as the user's message, and the set rebuilt from the ledger keeps both."""
    from toolduel.blackbox.run import start_attack, write_findings
    from toolduel.prompts import STYLE_KEY
    from toolduel.referee.outcome import TOOL_MOVE_KEY
    from toolduel.specs import specified
    from toolduel.world.generator import generate_samples
    from toolduel.world.tool_edits import tool_candidates

    monkeypatch.setattr("toolduel.report.build_report", lambda folder: None)
    samples = generate_samples(20, seed=2, kinds=("one_call",), phrasings=("plain",))
    seed = next(s for s in samples if tool_candidates(s))
    run = start_attack(BlackBoxConfig(**SERVED, out=str(tmp_path / "attack"), seeds="world:train",
                                      attack_surface="query,tools", tool_edits="written", harvest_keep="valid"))
    fc = ToolRecordingFC()
    ledger = QueryLedger(run.dir / "queries.jsonl", fc, k=1, generation=GenerationConfig(), lexicon=world_lexicon())
    asked = specified(seed, True, **{STYLE_KEY: "terse", TOOL_MOVE_KEY: "masked_names"})
    gold, look_alike = seed.gold[0].name, tool_candidates(seed)[0].name
    completion = f"{seed.query}\nTool edits:\nrename {gold} to tool_42\nadd {look_alike}"
    (outcome,) = ledger.score([asked], [completion], phase="attack", step=1)
    assert outcome.valid and outcome.tool_move == "masked_names"
    assert fc.offered[0] == [t.name if t.name != gold else "tool_42" for t in seed.tools] + [look_alike]

    write_findings(run, [seed], lambda line: None)
    (record,) = read_jsonl(run.dir / "pool.jsonl")
    assert [t["function"]["name"] for t in record["sample"]["tools"]] == fc.offered[0]
    assert list(record["sample"]["gold"][0]) == ["tool_42"]
    assert record["sample"]["messages"][-1]["content"] == record["query"] == seed.query
    assert record["tool_edits"] == [f"rename {gold} to tool_42", f"add {look_alike}"]
