"""The validity judge: its prompt, its answer parser, its cache, and its place in the validity gate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer

from toolduel.blackbox.ledger import RequestBudget
from toolduel.config import ConfigError
from toolduel.duel.config import GameConfig
from toolduel.duel.harvest import harvest
from toolduel.models.base import Generation
from toolduel.models.endpoint import EndpointChatModel
from toolduel.referee.judge import Judge, JudgePrompt, build_judge, parse_verdict
from toolduel.referee.outcome import score_queries
from toolduel.referee.rewards import QueryReward, QueryRewardSettings
from toolduel.run_files import read_jsonl
from toolduel.schema import Call, GoldCall, Sample, Tool
from toolduel.world.lexicon import world_lexicon

WEATHER = Tool("get_weather", "Current weather for a city.", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
SEED = Sample(id="w1", tools=[WEATHER], messages=[{"role": "user", "content": "Weather in Paris?"}],
              gold=[GoldCall.from_call(Call("get_weather", {"city": "Paris"}), WEATHER)])
OTHER_GOLD = Sample(id="w2", tools=[WEATHER], messages=[{"role": "user", "content": "Weather in Lima?"}],
                    gold=[GoldCall.from_call(Call("get_weather", {"city": "Lima"}), WEATHER)])


def request_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def verdict_responder(body: dict) -> dict:
    """A judge that rejects any request also asking about Berlin, and accepts the rest."""
    request = request_text(body).split("<<<")[1].split(">>>")[0]
    verdict = {"verdict": "invalid", "reason": "it also asks about Berlin"} if "Berlin" in request \
        else {"verdict": "valid", "reason": "exactly the expected call"}
    return {"role": "assistant", "content": json.dumps(verdict)}


def endpoint_judge(server: FakeOpenAIServer, cache: Path | None, **options) -> Judge:
    model = EndpointChatModel(server.base_url, "judge-model", api_key_env="TOOLDUEL_TEST_KEY", max_retries=1,
                              backoff_base=0.01, backoff_max=0.02, timeout=5.0)
    return Judge(model, cache, **options)


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, valid, reasons", [
    ('{"verdict": "valid", "reason": "fine"}', True, []),
    ('{"verdict": "invalid", "reason": "asks for Lima,\n not Paris"}', False, ["judge: asks for Lima, not Paris"]),
    ('```json\n{"verdict": "INVALID"}\n```', False, ["judge: no reason given"]),     # fenced, upper case, no reason
    ('{"verdict": true}', True, []),                                                # a JSON boolean
    ('Sure. {"note": 1} then {"verdict": "valid"}', True, []),                      # the object with a verdict
    ('<think>{"verdict": "valid"}</think>{"verdict": "invalid", "reason": "x"}', False, ["judge: x"]),  # no thoughts
    ("Verdict: invalid\nThe city differs.", False, ["judge: no reason given"]),     # the line form
    ('{"verdict": "perhaps"}', False, ["judge_unparseable: verdict 'perhaps' is neither valid nor invalid"]),
    ("", False, ["judge_unparseable: no verdict in the answer '(empty)'"]),
])
def test_parse_verdict(answer, valid, reasons):
    verdict = parse_verdict(answer)
    assert (verdict.valid, verdict.reasons) == (valid, reasons)


def test_hostile_answers_are_rejections_never_code(tmp_path):
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for answer in (code, "{" * 200_000, '{"verdict": ' * 5_000, "[1, 2]", None, '{"verdict": "inval'):
        started = time.perf_counter()
        verdict = parse_verdict(answer)
        assert verdict.valid is False and verdict.reasons[0].startswith("judge_unparseable: ")
        assert time.perf_counter() - started < 1.0  # bounded work on a runaway answer
    assert not marker.exists()


# --- the prompt ------------------------------------------------------------------------------


def test_shipped_prompt_is_filled_once_with_tools_gold_and_query():
    prompt = JudgePrompt.load()
    system, user = prompt.messages("Weather in Paris? ignore {gold} {tools}", SEED)
    assert system["role"] == "system" and "exactly the expected calls" in system["content"]
    assert '"name": "get_weather"' in user["content"]  # the tool's schema
    assert '[{"get_weather": {"city": ["Paris"]}}]' in user["content"]  # the gold calls, in BFCL's form
    assert "<<<\nWeather in Paris? ignore {gold} {tools}\n>>>" in user["content"]  # the query's braces stay as written
    assert "documentation" not in system["content"] + user["content"]  # the file's header is not sent


@pytest.mark.parametrize("text, message", [
    ("## user\n{tools} {gold} {query}", "needs a '## system' line"),
    ("## system\nyou judge\n## user\n{tools} {query}", "lacks the placeholder(s) {gold}"),
])
def test_a_custom_prompt_must_have_both_sections_and_every_placeholder(tmp_path, text, message):
    path = tmp_path / "prompt.md"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JudgePrompt.load(path)
    with pytest.raises(ConfigError, match="missing.md does not exist"):
        JudgePrompt.load(tmp_path / "missing.md")


# --- the cache -------------------------------------------------------------------------------


def test_a_pair_is_asked_once_also_across_resumes(fake_openai_server, tmp_path):
    fake_openai_server.responder = verdict_responder
    cache = tmp_path / "judge_cache.jsonl"
    judge = endpoint_judge(fake_openai_server, cache)

    verdicts = judge.judge(["Weather in Paris?", "Paris and Berlin weather?", "Weather in Paris?"], [SEED] * 3)

    assert [(v.valid, v.reasons) for v in verdicts] == [
        (True, []), (False, ["judge: it also asks about Berlin"]), (True, [])]
    assert fake_openai_server.request_count == 2  # the repeat within the call was not asked again
    body = fake_openai_server.requests[0].body
    assert "tools" not in body and body["temperature"] == 0.0  # the judge reads tools, it does not call them
    again = judge.judge(["Paris and Berlin weather?"], [SEED])
    resumed = endpoint_judge(fake_openai_server, cache).judge(["Weather in Paris?"], [SEED])
    assert fake_openai_server.request_count == 2  # cache hits: no request, in this judge or a new one
    assert again[0].cached and again[0].reasons == ["judge: it also asks about Berlin"]
    assert resumed[0].cached and resumed[0].valid
    assert len(read_jsonl(cache)) == 2
    # the same query with other gold calls is another pair
    endpoint_judge(fake_openai_server, cache).judge(["Weather in Paris?"], [OTHER_GOLD])
    assert fake_openai_server.request_count == 3


def test_malformed_answers_are_recorded_reasons_and_failures_are_not_cached(fake_openai_server, tmp_path):
    fake_openai_server.responder = lambda body: {"role": "assistant", "content": "Looks fine to me!"}
    fake_openai_server.faults = ["malformed_json", "500", "500"]  # request 1 breaks; request 2 fails twice
    cache = tmp_path / "judge_cache.jsonl"
    judge = endpoint_judge(fake_openai_server, cache)

    first, second = judge.judge(["Weather in Paris?", "Paris weather now"], [SEED, SEED])
    broken = [v for v in (first, second) if v.error]
    assert len(broken) == 2 and all(v.valid is False for v in broken)  # no verdict at all: not a rejection
    assert {v.error.split(" (")[0] for v in broken} >= {"judge request failed: HTTP 500: {\"error\": " \
                                                        "{\"message\": \"scripted HTTP 500\"}}"}
    assert not cache.exists()  # nothing cached for requests that failed
    (verdict,) = judge.judge(["Weather in Paris?"], [SEED])  # asked again, now answered (not JSON)
    assert verdict.error is None and verdict.reasons == [
        "judge_unparseable: no verdict in the answer 'Looks fine to me!'"]
    assert read_jsonl(cache)[0]["reasons"] == verdict.reasons and read_jsonl(cache)[0]["valid"] is False


def test_a_budget_refuses_questions_it_cannot_pay_for(fake_openai_server):
    fake_openai_server.responder = verdict_responder
    budget = RequestBudget(limit=1)
    verdicts = endpoint_judge(fake_openai_server, None, budget=budget).judge(["Weather in Paris?", "Paris, now?"],
                                                                             [SEED, SEED])
    assert verdicts[0].valid and verdicts[1].error == "judge not asked: the request budget is spent"
    assert fake_openai_server.request_count == 1 and budget.used == 1


def test_an_endpoint_judge_asks_the_budget_for_its_retries(fake_openai_server, tmp_path):
    from types import SimpleNamespace

    fake_openai_server.responder = verdict_responder
    fake_openai_server.faults = ["500", "500"]
    config = SimpleNamespace(judge_model="judge-model", judge_endpoint=fake_openai_server.base_url, out=str(tmp_path),
                             max_retries=3, backoff_base=0.01)
    budget = RequestBudget(limit=2)
    (verdict,) = build_judge(config, budget=budget).judge(["Weather in Paris?"], [SEED])
    assert fake_openai_server.request_count == 2 == budget.used  # the question, one retry; the next is refused
    assert "not retried: the request budget is spent" in verdict.error


def test_a_local_transformers_judge_works_and_its_noise_is_a_reason(tiny_qwen2, tiny_tokenizer, tmp_path):
    import copy

    from toolduel.models.hf import TransformersChatModel

    judge_model = copy.deepcopy(tiny_qwen2)  # the judge's prompt (1,500 byte-level tokens) needs a longer context
    judge_model.config.max_position_embeddings = 4096
    model = TransformersChatModel(judge_model, tiny_tokenizer, name="tiny-judge", batch_size=2)
    judge = Judge(model, tmp_path / "cache.jsonl", max_new_tokens=8)
    (verdict,) = judge.judge(["Weather in Paris?"], [SEED])
    assert verdict.valid is False and verdict.reasons[0].startswith("judge_unparseable: ")  # random weights
    assert read_jsonl(tmp_path / "cache.jsonl")[0]["judge"] == "tiny-judge"


class ScriptedSolver:
    """An FC model that answers Paris for Paris, Berlin for Berlin, and both for a query with both."""

    name = "scripted-solver"

    def __init__(self):
        self.asked = []

    def generate(self, conversations, tools, config=None):
        self.asked.extend(zip(conversations, tools))
        calls = [[city for city in ("Paris", "Berlin") if city in c[-1]["content"]] for c in conversations]
        return [Generation("".join(f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}'
                                   f'</tool_call>' for city in cities)) for cities in calls]


def test_a_solving_judge_answers_as_an_fc_model_and_its_calls_are_checked(tmp_path):
    solver = ScriptedSolver()
    judge = Judge(solver, tmp_path / "cache.jsonl", mode="solve")
    queries = ["Is it raining in Paris?", "Weather in Berlin?", "Paris weather, and Berlin's too"]

    verdicts = judge.judge(queries, [SEED] * 3)

    assert [v.valid for v in verdicts] == [True, False, False]
    assert verdicts[1].reasons[0].startswith("judge: solved as value_error:")  # Berlin, not the gold Paris
    assert verdicts[2].reasons == ["judge: solved as simple_function_checker:wrong_count (expected 1 call, got 2)"]
    conversation, tools = solver.asked[0]
    assert conversation == [{"role": "user", "content": "Is it raining in Paris?"}] and tools == [WEATHER]
    assert [r["prompt"] for r in read_jsonl(tmp_path / "cache.jsonl")] == ["solve"] * 3
    verify = Judge(solver, tmp_path / "cache.jsonl")  # the same model verifying is another question
    assert verify.key(queries[0], SEED) != judge.key(queries[0], SEED)
    with pytest.raises(ConfigError, match="judge_mode must be one of verify, solve"):
        GameConfig(judge_model="m", judge_mode="guess")
    assert build_judge(GameConfig(judge_model="m", judge_mode="solve"), model=solver).mode == "solve"


# --- in the validity gate and the duel --------------------------------------------------------


class ScriptedFC:
    name = "scripted"

    def __init__(self):
        self.prompts = []

    def generate(self, conversations, tools, config=None):
        self.prompts.extend(c[-1]["content"] for c in conversations)
        return [Generation("I cannot help.") for _ in conversations]


def test_judge_rejections_are_invalid_and_judge_failures_have_no_reward(fake_openai_server):
    fake_openai_server.responder = verdict_responder
    fake_openai_server.faults = lambda index, body: "500" if "Oslo" in request_text(body) else None
    fc = ScriptedFC()
    judge = endpoint_judge(fake_openai_server, None)
    queries = ["Paris weather please", "Paris and Berlin weather?", "Paris, Oslo weather?", "no city"]

    outcomes = score_queries(fc, [SEED] * 4, queries, judge=judge, lexicon=world_lexicon())
    assert [(o.valid, o.failed) for o in outcomes] == [(True, False), (False, False), (False, True), (False, False)]
    assert outcomes[1].reasons == ["judge: it also asks about Berlin"]
    assert outcomes[3].reasons[0].startswith("ungrounded")  # the rules ran first: the judge was not asked
    assert fc.prompts == ["Paris weather please"]  # the FC model only answers what the judge accepted
    settings = QueryRewardSettings(floor=False, invalid_penalty=-1.0)
    rewards = QueryReward(fc, k=1, settings=settings, judge=judge, lexicon=world_lexicon())(
        queries, sample=[json.dumps(SEED.to_dict())] * 4)
    assert rewards == [1.0, -1.0, None, -1.0]  # the judge's failure is no verdict: no reward, not a penalty


def test_game_config_judge_settings_are_checked():
    with pytest.raises(ConfigError, match="judge_endpoint needs judge_model"):
        GameConfig(judge_endpoint="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="judge_endpoint must be an http"):
        GameConfig(judge_model="m", judge_endpoint="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        GameConfig(judge_model="m", judge_api_key_env="sk-abc123")
    with pytest.raises(ConfigError, match="prompt.md does not exist"):
        GameConfig(judge_model="m", judge_prompt="/nonexistent/prompt.md")
    assert build_judge(GameConfig()) is None  # no judge_model: the rule check alone


def test_harvest_passes_queries_through_the_judge_named_in_the_config(fake_openai_server, tmp_path):
    fake_openai_server.responder = verdict_responder

    class QueryModel:
        name = "scripted query model"

        def generate(self, conversations, tools, config=None):
            return [Generation(text) for text in ("Paris weather please", "Paris and Berlin weather?")]

    config = GameConfig(out=str(tmp_path), judge_model="judge-model", judge_endpoint=fake_openai_server.base_url,
                        judge_api_key_env="TOOLDUEL_TEST_KEY", fc_samples=1, solvability_floor=False,
                        harvest_keep="valid")
    pool, stats = harvest(config, 1, [SEED, SEED], QueryModel(), ScriptedFC(), "q", "fc", tmp_path)

    records = read_jsonl(tmp_path / "harvest.jsonl")
    assert [(r["valid"], r["reasons"]) for r in records] == [(True, []), (False, ["judge: it also asks about Berlin"])]
    assert [p["query"] for p in pool] == ["Paris weather please"] and stats["validity_rate"] == 0.5
    assert len(read_jsonl(tmp_path / "judge_cache.jsonl")) == 2  # the run folder's cache


def test_the_duels_attack_reward_asks_the_judge_named_in_the_config(fake_openai_server, tmp_path_factory,
                                                                      monkeypatch):
    from toolduel.duel.attack import run_attack
    from toolduel.training.warm_start import ensure_world_models

    monkeypatch.setenv("TOOLDUEL_CACHE", str(tmp_path_factory.getbasetemp() / "toolduel-cache"))
    query_path = ensure_world_models("test", progress=False).query_path
    fake_openai_server.responder = lambda body: {"role": "assistant", "content": '{"verdict": "invalid"}'}
    ping = Tool("ping_server", "Pings the server.", {"type": "object", "properties": {}})
    seed = Sample(id="p", tools=[ping], messages=[{"role": "user", "content": "ping it"}],
                  gold=[GoldCall("ping_server")])  # no argument: the untrained model's queries pass the rules
    out = tmp_path_factory.mktemp("duel")
    config = GameConfig(out=str(out), judge_model="judge-model", judge_endpoint=fake_openai_server.base_url,
                        judge_api_key_env="TOOLDUEL_TEST_KEY", attack_steps=1, attack_prompts_per_step=2,
                        num_generations=2, max_query_tokens=12, fc_samples=1, solvability_floor=False)
    fc = ScriptedFC()

    result = run_attack(config, [seed, seed], fc, query_path, out, progress=False, on_log=lambda line: None)

    cache = read_jsonl(out / "judge_cache.jsonl")  # the run folder's cache
    assert cache and fake_openai_server.request_count == len(cache)  # each distinct pair asked once
    assert all(r["reasons"] == ["judge: no reason given"] for r in cache)
    assert result.steps[0]["validity_rate"] == 0.0 and fc.prompts == []  # nothing the judge rejected was played
