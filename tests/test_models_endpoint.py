"""EndpointChatModel against the in-process fake OpenAI server (tests/fake_openai_server.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest
from fake_openai_server import FakeOpenAIServer, completion, last_user_message

from toolduel.models import load_model
from toolduel.models.base import ChatModel, GenerationConfig
from toolduel.models.endpoint import (
    EndpointChatModel,
    parse_chat_completion,
    parse_retry_after,
)
from toolduel.schema import Tool

WEATHER = Tool("get_weather", "Current weather for a city.", {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]})


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def endpoint(server: FakeOpenAIServer, **options) -> EndpointChatModel:
    """Fast retries so that failure tests take milliseconds."""
    settings = {"max_retries": 3, "backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}
    return EndpointChatModel(server.base_url, "fake-model", api_key_env="TOOLDUEL_TEST_KEY",
                             **(settings | options))


def test_tool_call_answer_keeps_tool_calls_as_received(fake_openai_server):
    model = endpoint(fake_openai_server)
    config = GenerationConfig(max_new_tokens=32, temperature=0.5, top_p=0.9, seed=7)

    (generation,) = model.generate([user("please get_weather city=Paris days=3")], [[WEATHER]], config)

    assert isinstance(model, ChatModel)
    assert generation.error is None and generation.text == ""
    assert generation.tool_calls == [{"id": "call_0", "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 3})}}]
    assert generation.meta["finish_reason"] == "tool_calls" and generation.meta["attempts"] == 1
    (request,) = fake_openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {"model": "fake-model", "messages": user("please get_weather city=Paris days=3"),
                            "temperature": 0.5, "top_p": 0.9, "max_tokens": 32, "seed": 7,
                            "tools": [WEATHER.to_openai()]}


def test_text_answer_and_no_tools_key_without_tools(fake_openai_server):
    (generation,) = endpoint(fake_openai_server).generate([user("hello there")], [[]])

    assert (generation.text, generation.tool_calls, generation.error) == ("echo: hello there", None, None)
    body = fake_openai_server.requests[0].body
    assert "tools" not in body and "seed" not in body  # no tools offered, no seed configured


def test_order_is_kept_under_concurrency_and_concurrency_is_bounded(fake_openai_server):
    # Early items answer last, so completion order is the reverse of input order.
    fake_openai_server.faults = lambda index, body: f"sleep:{0.02 * (12 - int(last_user_message(body).split()[1]))}"
    model = endpoint(fake_openai_server, max_concurrency=4)

    generations = model.generate([user(f"item {i}") for i in range(12)], [[]] * 12,
                                 GenerationConfig(seed=100))

    assert [g.text for g in generations] == [f"echo: item {i}" for i in range(12)]
    assert 2 <= fake_openai_server.max_in_flight <= 4
    # Each request gets its own seed, so k repeats of one prompt are k different samples.
    assert sorted(r.body["seed"] for r in fake_openai_server.requests) == list(range(100, 112))


def test_retries_on_5xx_and_429_then_succeeds(fake_openai_server):
    fake_openai_server.faults = ["500", "503", "429:0.05", None]

    (generation,) = endpoint(fake_openai_server).generate([user("hi")], [[]])

    assert generation.error is None and generation.text == "echo: hi"
    assert generation.meta["attempts"] == 4 and fake_openai_server.request_count == 4
    assert generation.meta["waited_s"] >= 0.05  # the Retry-After of the 429 was honoured


def test_retry_after_is_capped(fake_openai_server):
    fake_openai_server.faults = ["429:3600"]  # a server asking for an hour
    started = time.monotonic()

    (generation,) = endpoint(fake_openai_server, retry_after_max=0.05).generate([user("hi")], [[]])

    assert generation.error is None and generation.meta["attempts"] == 2
    assert time.monotonic() - started < 2.0


def test_retries_exhausted_gives_an_error_generation(fake_openai_server):
    fake_openai_server.faults = lambda index, body: "500"

    (generation,) = endpoint(fake_openai_server, max_retries=2).generate([user("hi")], [[]])

    assert generation.text == "" and generation.tool_calls is None
    assert generation.error.startswith("HTTP 500") and "(after 3 attempts)" in generation.error
    assert "\n" not in generation.error
    assert fake_openai_server.request_count == 3


def test_a_retry_goes_out_only_when_the_permit_grants_it(fake_openai_server):
    fake_openai_server.faults = lambda index, body: "500"
    model = endpoint(fake_openai_server, max_retries=3)
    asked = []
    model.retry_permit = lambda: asked.append(1) or len(asked) < 2  # one retry granted, the next refused

    (generation,) = model.generate([user("hi")], [[]])

    assert fake_openai_server.request_count == 2 and len(asked) == 2
    assert "not retried: the request budget is spent" in generation.error and generation.meta["attempts"] == 2


def test_client_error_is_not_retried(fake_openai_server):
    fake_openai_server.faults = ["400"]

    (generation,) = endpoint(fake_openai_server).generate([user("hi")], [[]])

    assert generation.error.startswith("HTTP 400") and fake_openai_server.request_count == 1


def test_timeout_fails_only_the_slow_request(fake_openai_server):
    fake_openai_server.faults = lambda index, body: "sleep:5" if "slow" in last_user_message(body) else None
    model = endpoint(fake_openai_server, timeout=0.5, max_retries=1)

    fast, slow, fast_too = model.generate([user("fast"), user("slow"), user("fast too")], [[]] * 3)

    assert (fast.text, fast_too.text) == ("echo: fast", "echo: fast too")
    assert slow.error.startswith("timeout (ReadTimeout)") and slow.meta["attempts"] == 2


@pytest.mark.parametrize("fault, reason, attempts", [
    ("malformed_json", "malformed JSON", 1),  # a server bug: retrying would not help
    ("truncated", "connection error (RemoteProtocolError", 4),  # cut short in transit: retried
    ("disconnect", "connection error (RemoteProtocolError", 4),
    ("bad_tool_calls", "wrong shape: choices[0].message.tool_calls should be a list", 1),
    ("no_choices", "wrong shape: choices should be a non-empty list", 1),
])
def test_broken_answers_become_error_generations_without_losing_the_batch(fake_openai_server, fault, reason,
                                                                           attempts):
    fake_openai_server.faults = lambda index, body: fault if "broken" in last_user_message(body) else None
    model = endpoint(fake_openai_server, max_concurrency=2)

    good, broken = model.generate([user("get_weather city=Oslo"), user("broken get_weather")],
                                  [[WEATHER], [WEATHER]])

    assert good.error is None and good.tool_calls[0]["function"]["name"] == "get_weather"
    assert broken.text == "" and broken.tool_calls is None
    assert broken.error.startswith(reason), broken.error
    assert broken.meta["attempts"] == attempts


def test_connection_refused_gives_an_error_generation():
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = EndpointChatModel(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_base=0.01)

    (generation,) = model.generate([user("hi")], [[]])

    assert generation.error.startswith("connection error (ConnectError")


def test_api_key_is_sent_as_bearer_but_never_shown(fake_openai_server, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    first_attempts = set()

    def faults(index, body):  # "echo key": 401, which echoes the key; "hi": 500 once, then fine
        text = last_user_message(body)
        if text == "echo key":
            return "401"
        first = text not in first_attempts
        first_attempts.add(text)
        return "500" if first else None

    fake_openai_server.faults = faults
    model = endpoint(fake_openai_server, max_retries=1)

    ok, rejected = model.generate([user("hi"), user("echo key")], [[], []])

    assert {r.headers["Authorization"] for r in fake_openai_server.requests} == {f"Bearer {secret}"}
    assert ok.error is None and rejected.error.startswith("HTTP 401")
    assert "***" in rejected.error  # the server echoed the key; the error line hides it
    shown = [repr(model), str(model.to_config()), str(vars(model)), caplog.text, rejected.error]
    assert all(secret not in text for text in shown)
    assert "retrying" in caplog.text  # the logs were captured, not silent


def test_a_redirect_is_not_followed_so_the_key_stays_with_the_configured_host(fake_openai_server, monkeypatch):
    """A server redirecting to another host or port would get the key if the client followed:
    it does not; the answer is a failed request naming the redirect, and the other server
    (here: another port) never hears from the client."""
    secret = "sk-test-redirect-5150"
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", secret)
    with FakeOpenAIServer() as elsewhere:
        fake_openai_server.faults = lambda index, body: f"redirect:{elsewhere.base_url}/chat/completions"
        answer, = endpoint(fake_openai_server, max_retries=2).generate([user("hi")], [[]])
        assert elsewhere.requests == []
    assert answer.error.startswith("HTTP 307") and secret not in answer.error
    assert len(fake_openai_server.requests) == 1  # a redirect is no reason to retry
    assert fake_openai_server.requests[0].headers["Authorization"] == f"Bearer {secret}"


def test_missing_key_sends_no_authorization_header(fake_openai_server, monkeypatch):
    monkeypatch.delenv("TOOLDUEL_TEST_KEY", raising=False)

    endpoint(fake_openai_server).generate([user("hi")], [[]])

    assert "Authorization" not in fake_openai_server.requests[0].headers


def test_settings_are_checked_and_a_pasted_key_is_not_echoed():
    with pytest.raises(ValueError, match="NAME of an environment variable") as error:
        EndpointChatModel("http://localhost:8000/v1", "m", api_key_env="sk-live-abc/123")
    assert "sk-live" not in str(error.value)
    with pytest.raises(ValueError, match="NAME"):  # a hex key pasted here is not taken for a name
        EndpointChatModel("http://localhost:8000/v1", "m", api_key_env="a3f9c2e1b7d84f0e9c6b5a4d3e2f1a0b")
    with pytest.raises(ValueError, match="http://"):
        EndpointChatModel("localhost:8000", "m")
    with pytest.raises(ValueError, match="one tool list per conversation"):
        EndpointChatModel("http://localhost:8000/v1", "m").generate([user("a"), user("b")], [[]])
    assert EndpointChatModel("http://localhost:8000/v1", "m").generate([], []) == []


def test_load_model_builds_an_endpoint_and_refuses_a_key_in_the_spec(fake_openai_server):
    model = load_model({"backend": "endpoint", "base_url": fake_openai_server.base_url, "model": "m",
                        "max_concurrency": 3})

    assert isinstance(model, EndpointChatModel) and model.max_concurrency == 3
    assert model.generate([user("hi")], [[]])[0].text == "echo: hi"
    with pytest.raises(ValueError, match="api_key_env") as error:
        load_model({"backend": "endpoint", "base_url": "http://x/v1", "model": "m", "api_key": "sk-zzz"})
    assert "sk-zzz" not in str(error.value)
    with pytest.raises(ValueError, match="needs base_url"):
        load_model({"backend": "endpoint", "model": "m"})
    with pytest.raises(ValueError, match="unknown backend"):
        load_model({"backend": "tgi"})


def test_parse_chat_completion_accepts_content_parts_and_rejects_hostile_shapes():
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}
    assert parse_chat_completion(parts).text == "ab"
    # An empty tool_calls list means no call, like a missing one.
    assert parse_chat_completion({"choices": [{"message": {"content": "x", "tool_calls": []}}]}).tool_calls is None
    hostile = [
        [],  # not an object
        {"choices": "x" * 10_000},  # a huge wrong value: the reason stays one short line
        {"choices": [{"message": {"role": "assistant"}}]},  # neither content nor tool_calls
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"tool_calls": [{"function": {"name": ""}}]}}]},
        {"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": 3}}]}}]},
    ]
    for data in hostile:
        with pytest.raises(ValueError, match="^wrong shape") as error:
            parse_chat_completion(data)
        assert len(str(error.value)) < 200


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_a_key_echoed_across_the_cut_of_an_error_line_is_hidden_whole(fake_openai_server, monkeypatch):
    """The error line keeps 200 characters of the body: the key is redacted before the cut, so no
    part of it reaches the error (a long key echoed past the cut used to leave most of it)."""
    secret = "sk-" + "0123456789abcdef" * 11  # 179 characters: it starts inside the kept 200 and ends outside
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", secret)
    fake_openai_server.faults = ["401"]
    answer = endpoint(fake_openai_server, max_retries=0).generate([user("hi")], [[]])[0]
    assert answer.error.startswith("HTTP 401") and "Bearer ***" in answer.error
    assert not any(secret[i:i + 8] in answer.error for i in range(len(secret) - 8))


def test_a_key_read_from_a_crlf_file_is_sent_without_its_line_end_and_an_inner_control_character_is_refused(
        fake_openai_server, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", "sk-crlf-0123456789\r\n")
    answer = endpoint(fake_openai_server).generate([user("hi")], [[]])[0]
    assert answer.error is None and fake_openai_server.requests[0].headers["Authorization"] == "Bearer sk-crlf-0123456789"
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", "sk-in\rside-0123456789")
    with pytest.raises(ValueError, match="TOOLDUEL_TEST_KEY holds control characters") as error:
        endpoint(fake_openai_server)
    assert "sk-in" not in str(error.value)


def test_a_short_key_does_not_rewrite_answers(fake_openai_server, monkeypatch):
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", "0")  # a placeholder key some local servers take
    fake_openai_server.responder = lambda body: {"role": "assistant", "content": "10 of 100", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "add", "arguments": '{"a": 0, "b": "10"}'}}]}
    answer = endpoint(fake_openai_server).generate([user("add")], [[]])[0]
    assert answer.text == "10 of 100" and answer.tool_calls[0]["function"]["arguments"] == '{"a": 0, "b": "10"}'


def test_a_server_listing_the_key_as_its_model_is_refused(fake_openai_server, monkeypatch):
    from toolduel.config import ConfigError
    from toolduel.models.endpoint import served_model

    secret = "sk-reflected-0123456789"
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", secret)
    fake_openai_server.models = ["fake"]
    assert served_model(fake_openai_server.base_url, "TOOLDUEL_TEST_KEY") == "fake"
    fake_openai_server.models = [secret]
    with pytest.raises(ConfigError, match="lists the API key as a model id") as error:
        served_model(fake_openai_server.base_url, "TOOLDUEL_TEST_KEY")
    assert secret not in str(error.value)


def test_a_server_trickling_its_headers_cannot_hold_a_request_past_its_timeout(fake_openai_server):
    """Every byte of the headers comes within the per-read timeout, but not the whole answer
    within --timeout: the request ends at its deadline (before: after the ~250 bytes, 20 s here)."""
    fake_openai_server.faults = ["slow_headers:0.08"]
    started = time.monotonic()
    answer = endpoint(fake_openai_server, timeout=1.0, max_retries=0).generate([user("hi")], [[]])[0]
    assert answer.error is not None and answer.error.startswith("timeout")
    assert time.monotonic() - started < 3.0


def test_the_model_lookup_ends_within_its_timeout(fake_openai_server):
    from toolduel.config import ConfigError
    from toolduel.models.endpoint import served_model

    fake_openai_server.models, fake_openai_server.models_slowly = ["fake"], 0.08
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not list the served ones"):
        served_model(fake_openai_server.base_url, timeout=1.0)
    assert time.monotonic() - started < 3.0
    fake_openai_server.models_slowly = None
    assert served_model(fake_openai_server.base_url, timeout=1.0) == "fake"  # an honest server still answers


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_calls_nested_past_any_tool_are_refused_before_anything_walks_them(fake_openai_server, monkeypatch):
    """With a key set, every string of an answer's calls is searched for it, recursively: 600
    levels of lists sank the whole batch with a RecursionError (an eval had no answers at all)."""
    monkeypatch.setenv("TOOLDUEL_TEST_KEY", "sk-nested-0123456789")
    deep_key = {"name": "add", "arguments": "{}", "x": _nested(600)}
    deep_arguments = {"name": "add", "arguments": json.dumps({"a": _nested(40)})}
    fine = {"name": "add", "arguments": json.dumps({"a": [[1, 2], {"b": [3]}]})}
    answers = {f"call {i}": function for i, function in enumerate((deep_key, deep_arguments, fine))}
    fake_openai_server.responder = lambda body: json.dumps(completion(
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c", "type": "function", "function": answers[last_user_message(body)]}]})).encode()

    generations = endpoint(fake_openai_server).generate([user(text) for text in answers], [[]] * 3)

    assert [g.error is not None and "nest more than 32 levels" in g.error for g in generations] == [True, True, False]
    assert generations[2].tool_calls[0]["function"] == fine


def test_an_error_under_a_200_status_fails_with_the_servers_message(fake_openai_server):
    fake_openai_server.responder = lambda body: (
        b'{"error": {"message": "upstream overloaded", "code": 503}}' if "busy" in last_user_message(body)
        else b'{"error": {"message": "context too long", "code": "400"}}')

    busy, long = endpoint(fake_openai_server).generate([user("busy"), user("long")], [[]] * 2)

    assert "the server answered an error (503): upstream overloaded" in busy.error and busy.meta["attempts"] == 4
    assert "the server answered an error (400): context too long" in long.error and long.meta["attempts"] == 1


def test_a_compressed_answer_is_refused_unread(fake_openai_server):
    """A few hundred gzip bytes can unpack into gigabytes before a size bound counts them: the
    client asks for no coding and refuses one it was sent anyway."""
    fake_openai_server.faults = ["gzip", None]
    coded, plain = (endpoint(fake_openai_server, max_retries=0).generate([user("hi")], [[]])[0] for _ in range(2))
    assert coded.error is not None and "gzip-encoded, which was not asked for" in coded.error
    assert plain.error is None and plain.text == "echo: hi"
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in fake_openai_server.requests)


def test_a_model_list_nested_past_the_parser_is_a_clear_error(fake_openai_server):
    from toolduel.config import ConfigError
    from toolduel.models.endpoint import served_model

    fake_openai_server.models = b"[" * 50_000
    with pytest.raises(ConfigError, match="did not list the served ones .*RecursionError"):
        served_model(fake_openai_server.base_url)


def test_an_answer_holding_nan_is_malformed(fake_openai_server):
    """Python's parser reads NaN; a run file written from it would be no JSON for other tools."""
    fake_openai_server.responder = lambda body: (b'{"choices": [{"message": {"content": null, "tool_calls": [{"id": "c", '
                                                 b'"type": "function", "function": {"name": "add", "arguments": '
                                                 b'{"a": NaN}}}]}}]}')
    (answer,) = endpoint(fake_openai_server).generate([user("hi")], [[]])
    assert answer.error is not None and "malformed JSON in the answer (NaN is not JSON)" in answer.error
