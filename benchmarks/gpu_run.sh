#!/usr/bin/env bash
# The GPU measurements in one command (benchmarks/NOTES.md, "Running the GPU measurements"):
# environment report, then benchmarks/train_throughput.py (ViT-B/16, 224, batch 256, timm
# eager + compiled in the same process), then benchmarks/knn.py at the full UnED test_knn
# scale with the torch reference. Each part runs under its own timeout; a failing part
# never stops the next. Logs and JSON go to $OUT (5 files): env.txt, train.log, train.json,
# knn.log, knn.json. Exit status: 0 when both parts succeeded, else 1.
#
#   make gpu-wheels                      # once, on a machine with pip: .whl/ (ml-collections)
#   OUT=/tmp/gpuout bash benchmarks/gpu_run.sh
#   GPU_RUN_TINY=1 OUT=/tmp/gpuout bash benchmarks/gpu_run.sh   # tiny model, tiny kNN: CPU check
#   GPU_RUN_MEMORY=1 OUT=/tmp/gpuout bash benchmarks/gpu_run.sh # also the memory part (below)
#
# Optional third part (off by default: the two parts above already fill the 600 s of one
# device call): GPU_RUN_MEMORY=1 compiles the train step for ViT-L/14 at batch 256 in bf16,
# with and without remat, and prints XLA's memory analysis on the GPU compiler
# (benchmarks/memory.py; memory.log, memory.json; no step runs, nothing big is allocated).
# GPU_RUN_MEMORY_ROWS picks the rows; to add once those model classes are merged (issue 24):
# siglip_vit_with_embedding:B/16 and dinov2_vit_with_embedding:B/14.
#
# Settings (environment): PYTHON (python3), GPU_RUN_SITE (/tmp/site: where .whl/*.whl are
# installed), GPU_RUN_TRAIN_TIMEOUT (400 s), GPU_RUN_KNN_TIMEOUT (150 s),
# GPU_RUN_TORCH_DEVICE (cuda; cpu runs the kNN torch reference on the CPU), GPU_RUN_MEMORY (0),
# GPU_RUN_MEMORY_ROWS (clip_vit_with_embedding:L/14), GPU_RUN_MEMORY_TIMEOUT (300 s).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_run_out}
PY=${PYTHON:-python3}
SITE=${GPU_RUN_SITE:-/tmp/site}
TINY=${GPU_RUN_TINY:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || echo "gpu_run: installing .whl/*.whl failed" >&2
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"

if [ "$TINY" = 1 ]; then
    TRAIN_ARGS=(--tiny --steps 2 --warmup 1)
    KNN_ARGS=(--scales 0.002,0.01)
    TRAIN_TIMEOUT=${GPU_RUN_TRAIN_TIMEOUT:-900}
    KNN_TIMEOUT=${GPU_RUN_KNN_TIMEOUT:-600}
else
    TRAIN_ARGS=(--model_type B/16 --batch_size 256 --steps 20 --warmup 3)
    KNN_ARGS=(--scales 1.0 --no_faiss)
    TRAIN_TIMEOUT=${GPU_RUN_TRAIN_TIMEOUT:-400}
    KNN_TIMEOUT=${GPU_RUN_KNN_TIMEOUT:-150}
fi
KNN_ARGS+=(--torch_reference --torch_device "${GPU_RUN_TORCH_DEVICE:-cuda}")

{
    date -u
    nvidia-smi || echo "nvidia-smi: not available"
    "$PY" - <<'EOF'
import importlib.metadata as md
import sys

print("python", sys.version.split()[0], sys.executable)
for dist in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax",
             "orbax-checkpoint", "numpy", "ml-collections", "absl-py", "torch", "timm",
             "tensorflow", "clu", "faiss-cpu"):
    try:
        print(f"{dist:20} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist:20} (not installed)")
import jax

print("jax backend", jax.default_backend(), "devices", jax.devices())
try:
    import torch

    print("torch cuda", torch.cuda.is_available(), torch.version.cuda)
except ImportError as e:
    print("torch:", e)
EOF
} 2>&1 | tee "$OUT/env.txt"

clean() { tr '\r' '\n' <"$1" | grep -v -e 'query/s\]' -e '^ *$'; }  # a log without progress bars

run_part() {  # name timeout_s script args...: rc of the script, log and JSON in $OUT
    # Output goes to the file, not through a pipe: compiler worker processes that outlive a
    # timed-out script must not hold a pipe open. The log is printed once the part ends.
    local name=$1 limit=$2 script=$3
    shift 3
    echo "== $name: $script $* (timeout ${limit}s)"
    local t0=$SECONDS
    timeout -k 15 "$limit" "$PY" "$script" "$@" --out "$OUT/$name.json" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc after $((SECONDS - t0)) s" >>"$OUT/$name.log"
    clean "$OUT/$name.log" | tail -n 80
    return "$rc"
}

run_part train "$TRAIN_TIMEOUT" benchmarks/train_throughput.py "${TRAIN_ARGS[@]}"
TRAIN_RC=$?
run_part knn "$KNN_TIMEOUT" benchmarks/knn.py "${KNN_ARGS[@]}"
KNN_RC=$?
MEMORY_RC=0
if [ "${GPU_RUN_MEMORY:-0}" = 1 ]; then
    MEMORY_ARGS=(--rows "${GPU_RUN_MEMORY_ROWS:-clip_vit_with_embedding:L/14}")
    [ "$TINY" = 1 ] && MEMORY_ARGS+=(--tiny)
    run_part memory "${GPU_RUN_MEMORY_TIMEOUT:-300}" benchmarks/memory.py "${MEMORY_ARGS[@]}"
    MEMORY_RC=$?
fi

echo "== summary: train rc=$TRAIN_RC, knn rc=$KNN_RC, memory rc=$MEMORY_RC (124: timed out)"
sed -n '/^ViT-\|^tiny ViT/,$p' "$OUT/train.log" | head -16
clean "$OUT/knn.log" | grep -E '^ +scale|^ +[0-9.]+ +[0-9]+ +[0-9]+ |torch reference|mp_[0-9]+ ='
[ -f "$OUT/memory.log" ] && sed -n '/^batch /,$p' "$OUT/memory.log"
[ "$TRAIN_RC" = 0 ] && [ "$KNN_RC" = 0 ] && [ "$MEMORY_RC" = 0 ]
