"""A real OpenAI-compatible server on this machine: requests per second, and what the attack finds.

    python benchmarks/served.py --out runs/served.json
    python benchmarks/served.py --models smollm2 --requests 16 --max-requests 100 --out runs/served-quick.json

For each model (``smollm2``: SmolLM2-135M-Instruct zero-shot; ``world-fc``: the embedded default's
FC model, built or found in the cache) it starts ``toolduel serve`` on 127.0.0.1, then

- sends ``--requests`` world:plain requests (greedy, 64 new tokens at most) through toolduel's
  endpoint client at concurrency 1, 4 and 16: requests per second (and accuracy, as a check);
- runs ``toolduel attack --endpoint ... --seeds world:plain --max-requests N`` with the embedded
  query model and the default attack settings: the findings (valid queries the FC model got
  wrong, the adversarial set) per 1,000 requests, the validity rate and the wall time.

The JSON is written after each measurement, and a model already measured in ``--out`` is not
measured again: an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def start_server(model: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "toolduel.cli", "serve", model, "--port", str(port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise SystemExit(f"toolduel serve {model} did not come up:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def throughput(base_url: str, requests: int, concurrency: int) -> dict:
    from toolduel.data import load_samples
    from toolduel.evaluate import score_generation, summarize
    from toolduel.models import load_model
    from toolduel.models.base import GenerationConfig
    from toolduel.models.endpoint import served_model

    samples = load_samples("world:plain", limit=requests).samples
    model = load_model({"backend": "endpoint", "base_url": base_url, "model": served_model(base_url),
                        "max_concurrency": concurrency, "timeout": 600})
    started = time.perf_counter()
    answers = model.generate([s.messages for s in samples], [s.tools for s in samples],
                             GenerationConfig(max_new_tokens=64))
    seconds = time.perf_counter() - started
    summary = summarize(score_generation(s, a) for s, a in zip(samples, answers))
    return {"concurrency": concurrency, "requests": len(samples), "seconds": round(seconds, 1),
            "requests_per_s": round(len(samples) / seconds, 2), "accuracy": summary["accuracy"],
            "failed": summary["failed_requests"]}


def attack(base_url: str, max_requests: int, out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "toolduel.cli", "attack", "--endpoint", base_url,
                           "--seeds", "world:plain", "--max-requests", str(max_requests), "--out", str(out),
                           "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the attack failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    state = json.loads((out / "state.json").read_text())
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    findings = sum(1 for _ in (out / "pool.jsonl").open())
    sent = state["requests_sent"]
    return {"max_requests": max_requests, "requests_sent": sent, "seconds": round(seconds, 1),
            "queries": metrics["queries"], "validity_rate": metrics["validity_rate"],
            "attack_success_rate": metrics["attack_success_rate_before_defence"], "findings": findings,
            "findings_per_1000_requests": round(1000 * findings / max(sent, 1), 1), "folder": str(out),
            "stopped": state.get("stopped")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2,world-fc")
    parser.add_argument("--requests", type=int, default=32, help="world:plain requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--max-requests", type=int, default=300, help="the attack's request budget")
    parser.add_argument("--workdir", type=Path, help="attack folders and server logs (default: a temporary folder)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("machine", {"cpus": os.cpu_count(), "python": sys.version.split()[0]})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="served-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        if "attack" in report.get(name, {}):
            continue
        source = name
        if name == "world-fc":
            from toolduel.training.warm_start import ensure_world_models

            source = str(ensure_world_models(progress=False).fc_path)
        started = time.perf_counter()
        process, base_url = start_server(source, workdir / f"{name}.log")
        try:
            entry = {"model": source, "server_start_s": round(time.perf_counter() - started, 1), "throughput": []}
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                entry["throughput"].append(throughput(base_url, args.requests, concurrency))
                print(name, entry["throughput"][-1], file=sys.stderr, flush=True)
                report[name] = entry
                args.out.write_text(json.dumps(report, indent=2))
            entry["attack"] = attack(base_url, args.max_requests, workdir / f"attack-{name}")
            print(name, entry["attack"], file=sys.stderr, flush=True)
            report[name] = entry
            args.out.write_text(json.dumps(report, indent=2))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
