#!/usr/bin/env bash
# GPU benchmark: Schola's client against the server's own benchmark client, at the same concurrency, on one GPU
# server, then a short run on a server Schola's own launcher manages (backend=vllm with serve:).
#
#   benchmarks/gpu/run.sh [--dry-run] [--engine auto|vllm|llamacpp] [--model M] [--concurrency "64 256"]
#                         [--prompts 1024] [--input-len 256] [--output-len 128] [--port 8011] [--out DIR]
#
# Engines: vllm (`vllm serve`, native client `vllm bench serve`) where vLLM is installed or installable (a
# separate venv, .venv-vllm, so its torch does not replace Schola's); else llama.cpp's llama-server built with
# CUDA ($LLAMA_SERVER, or on PATH, or built from $LLAMA_CPP_DIR), native client a curl loop (xargs -P).
# Both clients send the same requests: --prompts prompts of --input-len random words, exactly --output-len
# tokens back (ignore_eos), no system message. The server is started once and warmed up; the clients take
# turns at each concurrency. Results: benchmarks/results/gpu.json (ratio Schola / native; target >= 0.9); the
# runs, prompts and server log in --out (default build/gpu-bench).
# --dry-run prints the exact commands and runs nothing. READY_PATH (default /health) is the readiness URL path.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
SCHOLA=${SCHOLA:-.venv/bin/schola}
ENGINE=auto MODEL="" CONC="64 256" PROMPTS=1024 IN=256 OUT_LEN=128 PORT=8011 OUT=build/gpu-bench DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --engine) ENGINE=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --prompts) PROMPTS=$2; shift ;;
    --input-len) IN=$2; shift ;;
    --output-len) OUT_LEN=$2; shift ;;
    --port) PORT=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
MAXC=$(printf '%s\n' $CONC | sort -n | tail -1)

run() {  # print a command exactly (shell-quoted), then run it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$DRY" = 1 ] || "$@"
}

if [ "$ENGINE" = auto ]; then
  if command -v vllm >/dev/null || [ -x .venv-vllm/bin/vllm ]; then
    ENGINE=vllm
  elif [ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null && { [ -d .venv-vllm ] || python3 -m venv .venv-vllm; } &&
       timeout 1800 .venv-vllm/bin/pip install -q vllm; then
    ENGINE=vllm
  else
    ENGINE=llamacpp
  fi
fi

URL=http://127.0.0.1:$PORT
if [ "$ENGINE" = vllm ]; then
  VLLM=${VLLM:-$(command -v vllm || { [ -x .venv-vllm/bin/vllm ] && echo .venv-vllm/bin/vllm; } || echo vllm)}
  MODEL=${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}
  SERVED=$MODEL READY=${READY_PATH:-/health}
  SERVER=("$VLLM" serve "$MODEL" --max-num-seqs "$MAXC" --gpu-memory-utilization 0.9 --host 127.0.0.1 --port "$PORT")
  MANAGED=("backend.serve.command=['$VLLM','serve','$MODEL']" "backend.serve.gpus=[0]"
           "backend.serve.max_num_seqs=$MAXC" "backend.serve.gpu_memory_utilization=0.9")
elif [ "$ENGINE" = llamacpp ]; then
  LLAMA=${LLAMA_SERVER:-$(command -v llama-server || echo build/llama.cpp/build/bin/llama-server)}
  if [ ! -x "$LLAMA" ] && [ "$DRY" = 0 ]; then  # build it with CUDA from $LLAMA_CPP_DIR (or a fresh clone)
    SRC=${LLAMA_CPP_DIR:-build/llama.cpp}
    [ -d "$SRC" ] || git clone --depth 1 https://github.com/ggml-org/llama.cpp "$SRC"
    cmake -S "$SRC" -B "$SRC/build" -DGGML_CUDA=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build "$SRC/build" -j --target llama-server
    LLAMA=$SRC/build/bin/llama-server
  fi
  MODEL=${MODEL:-$($PY -c 'from schola.backends.embedded import default_model_path; print(default_model_path())')}
  SERVED=smollm2 READY=${READY_PATH:-/health}
  CTX=$((MAXC * (IN * 2 + OUT_LEN + 64)))  # every slot holds its prompt (about 2 tokens a word here) and reply
  SERVER=("$LLAMA" -m "$MODEL" --alias smollm2 -ngl 999 -np "$MAXC" -c "$CTX" --host 127.0.0.1 --port "$PORT")
  MANAGED=("backend.serve.command=['$LLAMA','-m','$MODEL','--alias','smollm2','-ngl','999','-np','$MAXC','-c','$CTX']"
           "backend.serve.gpus=[0]")
else
  echo "--engine must be auto, vllm or llamacpp" >&2; exit 2
fi

# backend=vllm for either engine: it attaches to any OpenAI-compatible server (base_url) or starts one (serve:)
SCHOLA_ARGS=(benchmarks/gpu/saturation.yaml backend=vllm "backend.model=$SERVED" "scenario.data.path=$OUT/prompts.jsonl"
             "backend.max_tokens=$OUT_LEN" "+backend.extra.ignore_eos=true" "backend.timeout_s=600" "cache.enabled=false")

run mkdir -p "$OUT"
run "$PY" benchmarks/gpu/bench.py prompts --n "$PROMPTS" --words "$IN" --model "$SERVED" --max-tokens "$OUT_LEN" --out "$OUT"

printf '+'; printf ' %q' setsid "${SERVER[@]}"; printf ' > %q 2>&1 &\n' "$OUT/server.log"
if [ "$DRY" = 0 ]; then
  setsid "${SERVER[@]}" > "$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill -TERM -- -$SERVER_PID 2>/dev/null || true; sleep 5; kill -KILL -- -$SERVER_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1800); do
    curl -sf "$URL$READY" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -40 "$OUT/server.log"; exit 1; }
    sleep 1
  done
fi

# warm-up (not counted): the first requests of a fresh server are slow
run "$SCHOLA" run "${SCHOLA_ARGS[@]}" "backend.base_url=$URL/v1" "run.episodes=$MAXC" "run.concurrency=$MAXC" \
    "backend.max_concurrency=$MAXC" "hydra.run.dir=$OUT/warmup"
for C in $CONC; do
  run "$SCHOLA" run "${SCHOLA_ARGS[@]}" "backend.base_url=$URL/v1" "run.episodes=$PROMPTS" "run.concurrency=$C" \
      "backend.max_concurrency=$C" "hydra.run.dir=$OUT/schola-c$C"
  if [ "$ENGINE" = vllm ]; then
    run "$VLLM" bench serve --backend openai-chat --base-url "$URL" --endpoint /v1/chat/completions --model "$MODEL" \
        --dataset-name random --random-input-len "$IN" --random-output-len "$OUT_LEN" --ignore-eos \
        --num-prompts "$PROMPTS" --max-concurrency "$C" --save-result --result-dir "$OUT" --result-filename "native-c$C.json"
  else
    run "$PY" benchmarks/gpu/bench.py timed --out "$OUT/native-c$C.json" --n "$PROMPTS" -- sh -c \
        "seq $PROMPTS | xargs -P $C -I{} curl -sf -o /dev/null -H 'Content-Type: application/json' -d @$OUT/bodies/{}.json $URL/v1/chat/completions"
  fi
done

# Schola's own launcher on the GPU: a short run on a server it starts and stops itself
if [ "$DRY" = 0 ]; then kill -TERM -- -"$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; trap - EXIT; fi
run "$SCHOLA" run "${SCHOLA_ARGS[@]}" "${MANAGED[@]}" "backend.serve.ready_path=$READY" "run.episodes=$MAXC" \
    "run.concurrency=$MAXC" "backend.max_concurrency=$MAXC" "hydra.run.dir=$OUT/schola-managed"
run "$PY" benchmarks/gpu/bench.py summarize --out "$OUT" --engine "$ENGINE" --concurrency $CONC
