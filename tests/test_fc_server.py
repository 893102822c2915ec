"""The FC model behind a server that follows the run: each round's adapter loaded at run time."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from toolduel.config import ConfigError
from toolduel.duel.config import GameConfig
from toolduel.duel.players import fc_server
from toolduel.models.served import served_fc_model, served_name


class LoraRoutes(BaseHTTPRequestHandler):
    """vLLM's /v1/load_lora_adapter: 200 the first time, 400 "already been loaded" after."""

    loaded: dict
    seen: list

    def do_POST(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body, self.headers.get("Authorization")))
        if self.path != "/v1/load_lora_adapter":
            status, text = 404, "no route"
        elif body["lora_name"] in self.loaded:
            status, text = 400, f"The lora adapter '{body['lora_name']}' has already been loaded."
        else:
            self.loaded[body["lora_name"]] = body["lora_path"]
            status, text = 200, "Success"
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def lora_server():
    handler = type("Handler", (LoraRoutes,), {"loaded": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct"}')
    return folder


def test_each_rounds_adapter_is_loaded_once_under_its_own_name(tmp_path, lora_server, monkeypatch):
    url, handler = lora_server
    monkeypatch.setenv("FC_SERVER_KEY", "sk-test-123")
    config = GameConfig(fc_lora=True, fc_server=url, fc_server_model="qwen-fc", fc_server_api_key_env="FC_SERVER_KEY")
    run_dir = tmp_path / "runs" / "duel-7"
    adapter = _adapter(run_dir / "rounds" / "round_1" / "fc_model")
    model = served_fc_model(fc_server(config), adapter, run_dir)
    assert model.model == served_name(run_dir, adapter) == "toolduel-duel-7-rounds-round_1-fc_model"
    assert handler.loaded == {model.model: str(adapter.resolve())}
    served_fc_model(fc_server(config), adapter, run_dir)  # a resumed run asks again: "already loaded" is fine
    assert len(handler.seen) == 2 and all(auth == "Bearer sk-test-123" for _, _, auth in handler.seen)
    round_0 = run_dir / "rounds" / "round_0" / "fc_model"
    round_0.mkdir(parents=True)  # a full checkpoint: the model the server was started with
    assert served_fc_model(fc_server(config), round_0, run_dir).model == "qwen-fc" and len(handler.seen) == 2


def test_a_server_without_runtime_lora_loading_says_how_to_start_it(tmp_path, fake_openai_server):
    config = GameConfig(fc_lora=True, fc_server=fake_openai_server.base_url, fc_server_model="m")
    with pytest.raises(ConfigError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora"):
        served_fc_model(fc_server(config), _adapter(tmp_path / "run" / "fc_model"), tmp_path / "run")


def test_an_unreachable_server_is_named(tmp_path):
    config = GameConfig(fc_lora=True, fc_server="http://127.0.0.1:9/v1", fc_server_model="m")
    with pytest.raises(ConfigError, match="cannot be reached"):
        served_fc_model(fc_server(config), _adapter(tmp_path / "run" / "fc_model"), tmp_path / "run")


def test_fc_server_needs_a_lora_fc_model():
    with pytest.raises(ConfigError, match="fc_server needs fc_lora: true"):
        GameConfig(fc_server="http://127.0.0.1:8001/v1", fc_model="m")


def test_a_pasted_key_in_place_of_the_variable_name_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="NAME of an environment variable") as error:
        GameConfig(fc_lora=True, fc_server="http://127.0.0.1:8001/v1", fc_server_model="m",
                   fc_server_api_key_env="sk-live-abc123")
    assert "sk-live-abc123" not in str(error.value)
