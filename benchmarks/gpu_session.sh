#!/usr/bin/env bash
# What a lent GPU machine runs: the suite with the GPU cases, compute-sanitizer, and the
# kernel and training benchmarks, in stages that each fit a call of at most 10 minutes.
# (Documented in benchmarks/README.md and docs/gpu.md.)
#
#   bash benchmarks/gpu_session.sh probe      # what the machine has (seconds)
#   bash benchmarks/gpu_session.sh test       # build, whole test suite incl. the GPU cases
#   bash benchmarks/gpu_session.sh sanitize   # compute-sanitizer memcheck/racecheck/synccheck
#   bash benchmarks/gpu_session.sh kernels    # kernel benchmark vs cuSPARSE and cuBLAS
#   bash benchmarks/gpu_session.sh training   # training benchmark vs PyTorch dense+mask
#                                              (hidden 1000 full epoch; hidden 16384, peer
#                                              extrapolated from 50 batches)
#   bash benchmarks/gpu_session.sh all        # all of the above (longer than one call allows)
#
# Run from anywhere in the checkout (it changes to the repository root). Output goes to $OUT (the device tool's folder that comes back;
# default ./gpu_out): logs, JUnit XML, benchmark JSON. The last lines printed are a short
# summary, because the device tool returns only the tail of the output.
#
# Nothing here installs from the internet (the device machines have none). Missing pure-Python
# test dependencies are installed from ./.gpu_wheels when that folder was carried along
# (fill it with benchmarks/gpu_wheels.sh on a machine with a package registry).
# On this project's device machines CuPy, numba-cuda and PyTorch are already installed.
# The package is used from the checkout (PYTHONPATH), its C++ extension built in place.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}
SUMMARY="$OUT/summary.txt"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/session.log"; }
result() { echo "$*" >> "$SUMMARY"; log "$*"; }

probe() {
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
            2>&1 || true
        nvcc --version 2>&1 | tail -2 || true
        "$PY" -V
        for m in numpy scipy numba cupy torch sklearn pybind11 pytest hypothesis; do
            "$PY" -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>&1 | tail -1
        done
        "$PY" -c "import cupy; cupy.show_config()" 2>&1 | head -30
        nproc
    } > "$OUT/probe.txt" 2>&1
    result "probe: $(nvidia-smi -L 2>/dev/null | head -1 || true) $("$PY" -V 2>&1)"
}

deps() {
    local missing=()
    for m in pybind11 pytest hypothesis sklearn; do
        "$PY" -c "import $m" 2>/dev/null || missing+=("$m")
    done
    if [ ${#missing[@]} -gt 0 ] && [ -d .gpu_wheels ]; then
        local pkgs=("${missing[@]/sklearn/scikit-learn}")
        log "installing from .gpu_wheels: ${pkgs[*]}"
        "$PY" -m pip install -q --no-index --find-links .gpu_wheels "${pkgs[@]}" \
            >> "$OUT/deps.log" 2>&1 || log "pip from .gpu_wheels failed (see deps.log)"
    elif [ ${#missing[@]} -gt 0 ]; then
        log "missing and no .gpu_wheels: ${missing[*]}"
    fi
}

build() {
    if "$PY" -c "import ctre_sparse._native" 2>/dev/null; then
        return
    fi
    log "building the C++ extension in place"
    if "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
        result "build: native extension built"
    else
        result "build: FAILED (tail of build.log below); the numba backend still runs"
        tail -5 "$OUT/build.log"
    fi
}

backend_line() {
    "$PY" -c "from ctre_sparse.backends import backend_status as s; \
print('; '.join(f'{k}: ' + ('ok' if v is None else v) for k, v in s().items()))"
}

run_tests() {
    deps
    build
    result "backends: $(backend_line 2>&1 | tail -1)"
    "$PY" -m ctre_sparse info > "$OUT/info.txt" 2>&1 || true
    log "pytest: whole suite"
    timeout 540 "$PY" -m pytest -q -ra -p no:cacheprovider tests/ \
        --junitxml="$OUT/junit_all.xml" > "$OUT/pytest_all.log" 2>&1
    local rc=$?
    result "pytest whole suite: rc=$rc, $(tail -1 "$OUT/pytest_all.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest_all.log" | head -20 | tee -a "$SUMMARY"
}

sanitizer_bin() {
    for c in compute-sanitizer "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
             /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        if command -v "$c" > /dev/null 2>&1; then command -v "$c"; return; fi
    done
}

sanitize() {
    build
    local cs
    cs=$(sanitizer_bin)
    if [ -z "$cs" ]; then
        result "sanitize: compute-sanitizer not found"
        return
    fi
    # the GPU launch-path tests: every kernel and launch shape, small inputs
    local t="tests/test_cuda_compile.py"
    for tool in memcheck racecheck synccheck initcheck; do
        log "compute-sanitizer --tool $tool"
        timeout 200 "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 \
            "$PY" -m pytest -q -x -p no:cacheprovider "$t" -m gpu \
            > "$OUT/sanitizer_$tool.log" 2>&1
        result "sanitizer $tool: rc=$? ($(grep -m1 -E 'ERROR SUMMARY|passed|failed' \
            "$OUT/sanitizer_$tool.log" || echo 'see log'))"
    done
    log "compute-sanitizer memcheck on the kernel test grid (-k cuda)"
    timeout 240 "$cs" --tool memcheck --error-exitcode 99 --print-limit 20 \
        "$PY" -m pytest -q -x -p no:cacheprovider -k cuda tests/test_spmm.py \
        tests/test_spmm_t.py tests/test_sddmm.py tests/test_cosine_pairs.py \
        tests/test_topk_cosine.py > "$OUT/sanitizer_grid.log" 2>&1
    result "sanitizer memcheck, kernel grid: rc=$? ($(tail -1 "$OUT/sanitizer_grid.log"))"
}

kernels() {
    build
    log "kernel benchmark: n=16384, density 1%, batch 128-1024 (the issue's targets)"
    timeout 300 "$PY" benchmarks/bench_kernels.py --device cuda --sizes 16384 \
        --densities 0.01 --batches 128,256,512,1024 --fixed-nnz-per-row 0 \
        --json "$OUT/bench_kernels_gpu_targets.json" > "$OUT/bench_kernels_targets.log" 2>&1
    result "bench kernels (targets): rc=$?"
    tail -30 "$OUT/bench_kernels_targets.log"
    log "kernel benchmark: the wider grid"
    timeout 240 "$PY" benchmarks/bench_kernels.py --device cuda \
        --json "$OUT/bench_kernels_gpu.json" > "$OUT/bench_kernels_grid.log" 2>&1
    result "bench kernels (grid): rc=$?"
}

training() {
    build
    log "training benchmark on the GPU: hidden 1000 (Fashion-MNIST shape), with the torch peer"
    timeout 300 "$PY" benchmarks/bench_training.py --device cuda --epochs 3 \
        --json "$OUT/bench_training_gpu.json" > "$OUT/bench_training.log" 2>&1
    result "bench training (1000): rc=$?"
    tail -25 "$OUT/bench_training.log"
    log "training benchmark on the GPU: hidden 16384 (peer: 50 batches, extrapolated)"
    timeout 240 "$PY" benchmarks/bench_training.py --device cuda --hidden 16384 --epochs 1 \
        --peer-batches 50 --json "$OUT/bench_training_gpu_16384.json" \
        > "$OUT/bench_training_16384.log" 2>&1
    result "bench training (16384): rc=$?"
    tail -15 "$OUT/bench_training_16384.log"
}

stage=${1:-probe}
: > "$SUMMARY"
case "$stage" in
    probe) probe ;;
    test) probe; run_tests ;;
    sanitize) sanitize ;;
    kernels) kernels ;;
    training) training ;;
    all) probe; run_tests; sanitize; kernels; training ;;
    *) echo "unknown stage '$stage' (probe, test, sanitize, kernels, training, all)"; exit 2 ;;
esac
echo "==== summary ($stage) ===="
cat "$SUMMARY"
