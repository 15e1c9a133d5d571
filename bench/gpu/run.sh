#!/usr/bin/env bash
# The GPU benchmark in one call (see bench/gpu/README.md): unpack the payload `npm run bench:gpu:pack` made, build
# llama.cpp's CUDA backend for sm_90 from node-llama-cpp's bundled source, generate random-weight models shaped like
# Llama-3.2-1B and Llama-3.1-8B (F16, real Llama 3 tokenizer), run the engine at sequences 1, 8, 32, 64 over 2,000
# documents of ~200 tokens behind a shared prefix plus big-batch decodes as the ceiling, then llama-batched-bench
# from the same build, and write docs/s, tokens/s, VRAM and max |Δp| (batched vs serial) to $OUT.
#
#   bench/gpu/run.sh                 # on the GPU machine ($OUT set by the device tool)
#   bench/gpu/run.sh --cpu           # rehearsal here: prebuilt CPU binary, tiny model, nothing compiled
#   bench/gpu/run.sh --cpu --build   # rehearsal of the build step too (CPU-only llama.cpp, slow on 2 cores)
#
# Options: --pack DIR (default .gpu-pack), --out DIR (default $OUT), --work DIR (default /tmp/rescale-gpu-bench),
# --shapes LIST (default 1b,8b; --cpu: tiny), --documents N (default 2000; --cpu: 24), --sequences LIST
# (default 1,8,32,64; --cpu: 1,4), --budget SECONDS (default 540: optional steps are skipped past it),
# --jobs N (build and fill parallelism, default: all cores).
# Every step's time goes to steps.tsv and the summary is rewritten after each step, so a cut-off run still
# reports what it measured.

set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode=gpu
build=
pack="$root/.gpu-pack"
out="${OUT:-}"
work=/tmp/rescale-gpu-bench
shapes=
documents=
sequences=
budget=540
jobs="$(nproc)"

die() {
  echo "run.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --build) build=yes ;;
    --pack) pack="${2:?--pack needs a folder}"; shift ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    --work) work="${2:?--work needs a folder}"; shift ;;
    --shapes) shapes="${2:?--shapes needs a list such as 1b,8b}"; shift ;;
    --documents) documents="${2:?--documents needs a number}"; shift ;;
    --sequences) sequences="${2:?--sequences needs a list such as 1,8,32,64}"; shift ;;
    --budget) budget="${2:?--budget needs seconds}"; shift ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift ;;
    *) die "unknown option $1 (see the header of bench/gpu/run.sh)" ;;
  esac
  shift
done

if [ "$mode" = gpu ]; then
  build="${build:-yes}"
  shapes="${shapes:-1b,8b}"
  documents="${documents:-2000}"
  sequences="${sequences:-1,8,32,64}"
  gpu=cuda
else
  build="${build:-no}"
  shapes="${shapes:-tiny}"
  documents="${documents:-24}"
  sequences="${sequences:-1,4}"
  gpu=off
fi
[ -n "$out" ] || die "no output folder: set OUT or pass --out DIR"
case "$documents" in '' | *[!0-9]*) die "--documents must be a positive integer, got '$documents'" ;; esac
for part in node.xz runtime.tar.xz models.tar.xz; do
  [ -f "$pack/$part" ] || die "$pack/$part is missing: run 'npm run bench:gpu:pack' and name .gpu-pack in carry"
done
if [ "$build" = yes ] && [ ! -f "$pack/llama-src.tar.xz" ]; then
  die "$pack/llama-src.tar.xz is missing: run 'npm run bench:gpu:pack'"
fi

mkdir -p "$out" "$work" || die "cannot create $out or $work"
out="$(cd "$out" && pwd)"
work="$(cd "$work" && pwd)"
log="$out/log.txt"
steps="$out/steps.tsv"
: >"$log"
printf 'step\tseconds\tstatus\n' >"$steps"
started=$SECONDS
node="$work/bin/node"
rt="$work/rt"
models="$work/models"

elapsed() { echo $((SECONDS - started)); }

# step NAME COMMAND...: runs COMMAND, records its time and exit status; returns the status.
step() {
  local name="$1" t0=$SECONDS status
  shift
  echo "== $name (at $(elapsed) s)"
  "$@"
  status=$?
  printf '%s\t%s\t%s\n' "$name" $((SECONDS - t0)) "$status" >>"$steps"
  [ "$status" -eq 0 ] || echo "== $name FAILED (exit $status)"
  return "$status"
}

within_budget() {
  if [ "$(elapsed)" -ge "$budget" ]; then
    echo "== skipping $1: $(elapsed) s used of the $budget s budget"
    printf '%s\t0\tskipped\n' "$1" >>"$steps"
    return 1
  fi
}

summarize() {
  [ -x "$node" ] || return 0
  "$node" "$rt/engine-bench.mjs" --summarize "$work/results" --out "$out" --mode "$mode" || true
}

unpack() {
  rm -rf "$rt" "$models" "$work/bin" "$work/results" && mkdir -p "$rt" "$models" "$work/bin" "$work/results" || return 1
  xz -dc "$pack/node.xz" >"$node" && chmod +x "$node" &
  local a=$!
  tar -xJf "$pack/runtime.tar.xz" -C "$rt" &
  local b=$!
  tar -xJf "$pack/models.tar.xz" -C "$models" &
  local c=$!
  local d=
  if [ "$build" = yes ]; then
    rm -rf "$work/llama.cpp" && tar -xJf "$pack/llama-src.tar.xz" -C "$work" &
    d=$!
  fi
  local status=0
  for p in $a $b $c $d; do wait "$p" || status=1; done
  [ "$status" -eq 0 ] && "$node" --version
}

environment() {
  echo "mode $mode, shapes $shapes, documents $documents, sequences $sequences, build $build, jobs $jobs"
  uname -a
  nproc
  free -g 2>/dev/null | head -2
  df -h "$work" 2>/dev/null | tail -1
  if [ "$mode" = gpu ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    command -v nvcc >/dev/null && nvcc --version | tail -2
  fi
  cmake --version 2>/dev/null | head -1
  python3 -c 'import numpy, sys; print("python", sys.version.split()[0], "numpy", numpy.__version__)'
}

# The CUDA libraries' folders, so node-llama-cpp detects CUDA and libggml-cuda.so finds cudart and cuBLAS.
cuda_paths() {
  local dirs=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$d" ] && dirs="$dirs:$d"
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  [ -d /usr/local/cuda ] && export CUDA_PATH=/usr/local/cuda
  [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
  return 0
}

build_llama() {
  local src="$work/llama.cpp" dir="$work/build" cuda=OFF targets=(ggml-cpu llama-batched-bench)
  if [ "$mode" = gpu ]; then
    cuda=ON
    targets=(ggml-cuda "${targets[@]}")
  fi
  # The prebuilt addon loads its backends as shared libraries (GGML_BACKEND_DL): this build makes the same
  # libggml-cuda.so from the same source, for sm_90 only, plus llama-batched-bench and its CPU backend.
  cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON \
    -DGGML_NATIVE=OFF -DGGML_CUDA="$cuda" -DCMAKE_CUDA_ARCHITECTURES=90-real -DGGML_CCACHE=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_HTTPLIB=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DGGML_BUILD_NUMBER=1 >"$work/cmake.log" 2>&1 || {
    tail -40 "$work/cmake.log"
    return 1
  }
  ninja -C "$dir" -j "$jobs" "${targets[@]}" >"$work/ninja.log" 2>&1 || {
    grep -B2 -A12 -m3 'error' "$work/ninja.log" | head -80
    tail -20 "$work/ninja.log"
    return 1
  }
  tail -1 "$work/ninja.log"
  if [ "$mode" = gpu ]; then
    local lib
    lib="$(find "$dir" -name libggml-cuda.so -type f | head -1)"
    [ -n "$lib" ] || { echo "no libggml-cuda.so under $dir"; return 1; }
    ls -la "$lib"
    cp "$lib" "$rt/node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so"
  fi
}

fill_model() {
  local shape="$1"
  rm -f "$models/$shape.gguf"
  python3 "$here/fill-gguf.py" "$models/$shape.head" "$models/$shape.plan.json" "$models/$shape.gguf" \
    --procs "$fill_jobs" | tee "$work/results/fill-$shape.json"
}

vram_sampler() {
  [ "$mode" = gpu ] || return 0
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 250 \
    >"$work/results/vram-$1.csv" 2>/dev/null &
  echo $! >"$work/vram.pid"
}

vram_stop() {
  [ -f "$work/vram.pid" ] || return 0
  kill "$(cat "$work/vram.pid")" 2>/dev/null
  wait "$(cat "$work/vram.pid")" 2>/dev/null
  rm -f "$work/vram.pid"
}

engine() {
  local shape="$1" status
  vram_sampler "$shape"
  # Stopped at the budget's end: the bench writes its JSON after every part, so what it measured is kept.
  timeout --signal=TERM $((budget - $(elapsed) > 10 ? budget - $(elapsed) : 10)) \
    "$node" "$rt/engine-bench.mjs" --model "$models/$shape.gguf" --documents "$rt/docs.json" --count "$documents" \
    --sequences "$sequences" --gpu "$gpu" --threads "$(nproc)" --out "$work/results/engine-$shape.json"
  status=$?
  vram_stop
  return "$status"
}

batched_bench() {
  local shape="$1" bin="$work/build/bin/llama-batched-bench" npl ngl
  [ -x "$bin" ] || { echo "no $bin (build step skipped or failed)"; return 1; }
  if [ "$mode" = gpu ]; then npl=1,8,32,64; ngl=99; else npl=1,4; ngl=0; fi
  {
    echo "## $shape: llama-batched-bench -npp 224 -ntg 1 -npl $npl"
    "$bin" -m "$models/$shape.gguf" -c 16384 -b 2048 -ub 512 -ngl "$ngl" -npp 224 -ntg 1 -npl "$npl" 2>&1 |
      grep -E '^\|| PP |main:|error|failed'
  } | tee -a "$work/results/batched-bench.txt"
}

fill_all() {
  local shape status=0
  for shape in "${shape_list[@]}"; do
    if [ ! -f "$models/$shape.plan.json" ]; then
      echo "no model shape '$shape' in the pack (tiny, 1b, 8b)"
      status=1
      continue
    fi
    fill_model "$shape" || status=1
  done
  return "$status"
}

IFS=, read -r -a shape_list <<<"$shapes"

main() {
  step environment environment
  step unpack unpack || die "unpacking $pack failed"
  summarize
  if [ "$mode" = gpu ]; then cuda_paths; fi
  # The models are written while llama.cpp compiles (a quarter of the cores; the build takes the rest).
  fill_jobs=$jobs
  [ "$build" = yes ] && fill_jobs=$(((jobs + 3) / 4))
  step fill-models fill_all &
  fill_pid=$!
  if [ "$build" = yes ]; then
    step build build_llama || echo "build failed: no sm_90 backend and no llama-batched-bench"
    summarize
  fi
  wait "$fill_pid"
  summarize
  # Per shape: the engine, then llama-batched-bench on the same model, so a run cut off by the budget still has
  # both sides of the first shape.
  for shape in "${shape_list[@]}"; do
    [ -f "$models/$shape.gguf" ] || continue
    within_budget "engine-$shape" && step "engine-$shape" engine "$shape"
    summarize
    if [ "$build" = yes ]; then
      within_budget "batched-bench-$shape" && step "batched-bench-$shape" batched_bench "$shape"
      summarize
    fi
  done
  rm -f "$models"/*.gguf
  [ -f "$work/ninja.log" ] && cp "$work/ninja.log" "$out/build.log"
  [ -f "$work/results/batched-bench.txt" ] && cp "$work/results/batched-bench.txt" "$out/batched-bench.txt"
  summarize
  echo "== done in $(elapsed) s; results in $out"
  # Exit status: 1 when a step failed (skipped steps are not failures).
  ! awk -F '\t' 'NR > 1 && $3 != "0" && $3 != "skipped" { found = 1 } END { exit !found }' "$steps"
}

main 2>&1 | tee -a "$log"
