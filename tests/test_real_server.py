"""The black-box paths against a real OpenAI-compatible server: `toolduel serve` (transformers'
own server) on 127.0.0.1, serving SmolLM2-135M-Instruct zero-shot and the world's FC model.

- `toolduel eval --endpoint` gives the verdicts `toolduel eval --model` gives on the same
  checkpoint, greedy (the served folder renders the prompt toolduel renders);
- `toolduel attack --endpoint` stops at its request budget (300) with exit 0, resumes after
  kill -9, and the server never got a request over the budget (counted by a proxy of the test's
  own in front of it, not read from the server's log, whose wording changes between releases);
- a judge behind the same real server verifies queries;
- the attack trains a LoRA adapter of SmolLM2 as its query model (`--query-lora true`).

The world's FC model is the "test" build (tiny, seconds) so that the attack's hundreds of
requests take seconds; SmolLM2 answers the parity check and judges. Slow: about three minutes
on 2 cores (run nothing else meanwhile: two torch processes on two cores slow each other badly).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from processes import kill_when
from typer.testing import CliRunner

from toolduel.checkpoints import SMOLLM2
from toolduel.cli import app
from toolduel.run_files import read_jsonl
from toolduel.schema import GoldCall, Sample, Tool

pytestmark = pytest.mark.slow

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


class CountingProxy:
    """A reverse proxy in the test process in front of a real server: it forwards every request
    and counts the chat completions it forwarded, as they arrive."""

    def __init__(self, upstream: str):
        self.chat_completions = 0
        self._lock = threading.Lock()
        client = httpx.Client(base_url=upstream, timeout=600)
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.command == "POST" and self.path.rstrip("/").endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.chat_completions += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                except httpx.HTTPError as error:
                    self.send_error(502, str(error))
                    return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RealServer:
    """`toolduel serve MODEL` in a child process, with its log in a file, behind a
    :class:`CountingProxy`: ``base_url`` is the proxy's."""

    def __init__(self, model: str, log: Path, env: dict, *options: str):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proxy = CountingProxy(f"http://127.0.0.1:{self.port}")
        self.base_url = f"http://127.0.0.1:{self.proxy.port}/v1"
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "toolduel.cli", "serve", model, "--port",
                                         str(self.port), *options], stdout=log.open("w"), stderr=subprocess.STDOUT,
                                        env=env)
        deadline = time.time() + 300
        while not self._healthy():
            if self.process.poll() is not None or time.time() > deadline:
                self.close()
                pytest.fail(f"toolduel serve {model} did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        from toolduel.models.endpoint import served_model

        self.name = served_model(self.base_url)  # the folder it serves, under its path

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def requests_received(self) -> int:
        return self.proxy.chat_completions

    def close(self) -> None:
        self.proxy.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from toolduel.training.warm_start import ensure_world_models

    path = tmp_path_factory.getbasetemp() / "toolduel-cache"
    old = os.environ.get("TOOLDUEL_CACHE")
    os.environ["TOOLDUEL_CACHE"] = str(path)
    ensure_world_models("test", progress=False)
    yield path
    if old is None:
        del os.environ["TOOLDUEL_CACHE"]
    else:
        os.environ["TOOLDUEL_CACHE"] = old


@pytest.fixture(scope="module")
def smollm2_server(cache, tmp_path_factory):
    # answers as text: toolduel's parser reads them, as it does locally (a zero-shot model may
    # write a malformed <tool_call> block, which the server's own parser answers with HTTP 500)
    server = RealServer(SMOLLM2, tmp_path_factory.mktemp("serve") / "smollm2.log",
                        os.environ | {"TOOLDUEL_CACHE": str(cache)}, "--tool-calls", "text")
    yield server
    server.close()


@pytest.fixture(scope="module")
def world_fc_server(cache, tmp_path_factory):
    from toolduel.training.warm_start import ensure_world_models

    fc_path = str(ensure_world_models("test", progress=False).fc_path)
    server = RealServer(fc_path, tmp_path_factory.mktemp("serve") / "world_fc.log",
                        os.environ | {"TOOLDUEL_CACHE": str(cache)})
    yield server
    server.close()


def results(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(folder / "results.jsonl")}


def test_serving_a_packaged_model_tells_the_server_how_to_show_tools_and_read_calls(smollm2_server):
    from transformers import AutoTokenizer

    served = AutoTokenizer.from_pretrained(smollm2_server.name)
    assert "tools_instruction" in served.chat_template  # SmolLM2's template takes no tools: wrapped
    assert "tool_calls" not in served.response_template["fields"]  # --tool-calls text
    log = smollm2_server.log.read_text()
    assert "they go into the system message" in log and "toolduel eval --endpoint" in log


@pytest.mark.parametrize("which", ["smollm2_server", "world_fc_server"])
def test_eval_through_the_server_gives_the_local_verdicts(which, request, tmp_path):
    server = request.getfixturevalue(which)
    common = ["--data", "world:plain", "--limit", "32", "--max-new-tokens", "24", "--no-progress"]
    # no --model: the one model the server lists. The server answers one request at a time.
    served = CliRunner().invoke(app, ["eval", "--endpoint", server.base_url, "--out", str(tmp_path / "served"),
                                      "--timeout", "600", *common])
    assert served.exit_code == 0, served.output
    local = CliRunner().invoke(app, ["eval", "--model", server.name, "--batch-size", "1",
                                     "--out", str(tmp_path / "local"), *common])
    assert local.exit_code == 0, local.output
    remote, here = results(tmp_path / "served"), results(tmp_path / "local")
    assert set(remote) == set(here) and len(remote) == 32
    assert not [r for r in remote.values() if r.get("generation_error")]  # every request answered
    for sample_id, answer in remote.items():
        # the same prompt and greedy decoding: the same calls, and so the same verdict (the text
        # itself may differ in the whitespace the server strips)
        assert (answer["parsed_calls"], answer["valid"], answer["error_type"]) == \
            (here[sample_id]["parsed_calls"], here[sample_id]["valid"], here[sample_id]["error_type"]), sample_id


SEEDS = [Sample(id=f"seed-{i}", tools=[Tool(name, f"Does {name.replace('_', ' ')}.", {"type": "object",
                                                                                      "properties": {}})],
                messages=[{"role": "user", "content": f"please {name.replace('_', ' ')}"}], gold=[GoldCall(name, {})])
         for i, name in enumerate(["refresh_cache", "list_files", "ping_server", "clear_history"])]
ATTACK = ["--no-progress", "--world-budget", "test", "--attack-prompts-per-step", "2", "--num-generations", "4",
          "--max-query-tokens", "12", "--fc-samples", "2", "--harvest-seeds", "4", "--batch-size", "4",
          "--save-steps", "1", "--max-concurrency", "4", "--timeout", "30"]


def test_the_attack_stops_at_its_budget_and_resumes_after_kill_9(world_fc_server, tmp_path, cache):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in SEEDS))
    out, budget = tmp_path / "attack", 300
    received_before = world_fc_server.requests_received()
    command = [sys.executable, "-m", "toolduel.cli", "attack", "--endpoint", world_fc_server.base_url,
               "--model", world_fc_server.name, "--seeds", str(seeds), "--out", str(out),
               "--max-requests", str(budget), "--attack-steps", "200", *ATTACK]
    env = os.environ | {"TOOLDUEL_CACHE": str(cache)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    kill_when(process, lambda: len(read_jsonl(out / "attack_log.jsonl")) >= 2 and (out / "trainer").exists(),
              timeout=300, poll=0.05)
    state = json.loads((out / "state.json").read_text())
    assert 0 < state["requests_sent"] < budget  # killed mid-attack

    resumed = subprocess.run([sys.executable, "-m", "toolduel.cli", "attack", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "request budget of 300 is spent" in " ".join((resumed.stdout + resumed.stderr).split())
    sent = json.loads((out / "state.json").read_text())["requests_sent"]
    received = world_fc_server.requests_received() - received_before
    records = read_jsonl(out / "queries.jsonl")
    # counted before it is sent, recorded once answered: on record <= received <= sent <= budget
    assert sum(r["requests"] for r in records) <= received <= sent <= budget
    assert sent > budget - 2  # spent, up to a query's k=2 answers
    assert received >= sent - 4  # at most the requests in flight at the kill (max_concurrency) went unanswered
    scored = [r["query"] for r in records if r["status"] == "scored"]
    assert len(scored) == len(set(scored)) > 0  # no query scored twice, across the kill
    for name in ("pool.jsonl", "pool_dataset", "report/report.html", "query_model"):
        assert (out / name).exists(), name


def test_a_judge_behind_the_real_server_verifies_queries(world_fc_server, smollm2_server, tmp_path, cache):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in SEEDS))
    out = tmp_path / "attack"
    judge_before = smollm2_server.requests_received()
    result = CliRunner().invoke(app, [
        "attack", "--endpoint", world_fc_server.base_url, "--model", world_fc_server.name, "--seeds", str(seeds),
        "--out", str(out), "--attack-steps", "1", *ATTACK, "--harvest-seeds", "0",
        "--judge-model", smollm2_server.name, "--judge-endpoint", smollm2_server.base_url,
        "--judge-max-tokens", "16"])
    assert result.exit_code == 0, result.output
    verdicts = read_jsonl(out / "judge_cache.jsonl")
    assert verdicts and smollm2_server.requests_received() - judge_before == len(verdicts)  # once per pair
    assert all(isinstance(v.get("valid"), bool) for v in verdicts)


def test_the_attack_trains_a_lora_adapter_of_a_real_query_model(world_fc_server, tmp_path, cache):
    """`toolduel attack --query-model smollm2 --query-lora true`: the trainer settings of the duel
    reach the black-box attack, on a real pretrained query model."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in SEEDS))
    out = tmp_path / "attack"
    result = CliRunner().invoke(app, [
        "attack", "--endpoint", world_fc_server.base_url, "--seeds", str(seeds), "--out", str(out),
        "--query-model", SMOLLM2, "--query-lora", "true", "--lora-rank", "4", "--attack-steps", "1", *ATTACK,
        "--harvest-seeds", "0"])
    assert result.exit_code == 0, result.output
    adapter = json.loads((out / "query_model" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and not (out / "query_model" / "model.safetensors").exists()
