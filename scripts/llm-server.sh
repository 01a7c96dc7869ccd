#!/usr/bin/env bash
# Runs the local OpenAI-compatible model server (installed by scripts/install-llm.sh) in the
# foreground, for a supervisor: `scripts/llm-server.sh MODEL PORT`. Listens on 127.0.0.1 only.
# Ready when GET /v1/models answers; chat at POST /v1/chat/completions.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 MODEL.gguf PORT" >&2
  exit 2
fi
model=$1 port=$2
venv="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/venv-llm-0.3.36"

# --chat_format chatml: SmolLM2-Instruct is trained on ChatML (<|im_start|>role ... <|im_end|>),
#   which its GGUF's template also is; naming it keeps the prompt fixed if the model changes.
# --n_threads 1: on two cores shared with the services under test, 1 thread decoded faster
#   (~145 tok/s) than 2 (~85-140 tok/s, spinning threads fight the load), and leaves them a core.
# --n_ctx 2048: a short prompt plus a JSON answer needs far less than the model's 8k, and less
#   context is less memory and a faster start.
# --verbose false: otherwise llama.cpp logs every load and request at length.
exec "$venv/bin/python" -m llama_cpp.server \
  --model "$model" --host 127.0.0.1 --port "$port" \
  --n_ctx 2048 --chat_format chatml --n_threads 1 --verbose false
