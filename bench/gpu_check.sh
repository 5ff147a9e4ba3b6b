#!/usr/bin/env bash
# One GPU check, a few minutes on one GPU: the benchmark, a LeNet-300-100 round
# at the paper's 50K iterations, a short ResNet-18 run with rewinding and
# --mixed_precision, and the --strategy=mirrored path. Prints a table; exits
# non-zero if any check failed.
#
#   bench/gpu_check.sh            # on the GPU machine (full sizes)
#   bench/gpu_check.sh --quick    # tiny sizes: runs on CPU in about a minute (CI)
#   bench/gpu_check.sh --out DIR  # keep logs and runs in DIR (default: a temp dir)
#
# Data are random pixels in the MNIST IDX and CIFAR10 binary formats at the real
# sizes (bench/gpu_check_util.py), so no download is needed; accuracies on them
# are chance-level, times are real. Each check's output is in <out>/<check>.log.
set -u
cd "$(dirname "$0")/.."

QUICK=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$(mktemp -d -t lth_gpu_check.XXXXXX)}"
mkdir -p "$OUT"
: > "$OUT/checks.tsv"
PY="${PYTHON:-python}"

if [ "$QUICK" = 1 ]; then
  LENET_IT=200;  LENET_EVAL=100; RESNET_IT=20;   RESNET_K=10;  RESNET_EVAL=10
  MIRROR_IT=100; MIRROR_EVAL=50; VAL=300;        BENCH_ARGS="--quick"
else
  LENET_IT=50000; LENET_EVAL=100; RESNET_IT=2000; RESNET_K=500; RESNET_EVAL=500
  MIRROR_IT=2000; MIRROR_EVAL=500; VAL=5000;     BENCH_ARGS=""
fi

if command -v nvidia-smi >/dev/null 2>&1; then
  echo "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | paste -sd ';' -)"
else
  echo "device: no nvidia-smi (CPU)"
fi
echo "output: $OUT"

"$PY" bench/gpu_check_util.py data "$OUT/data" $([ "$QUICK" = 1 ] && echo --quick) || exit 1

# check NAME RUN_DIR COMMAND...: runs it, logs it, records status and wall time.
check() {
  local name="$1" run_dir="$2"; shift 2
  echo "== $name: $*"
  local start end status
  start=$(date +%s.%N)
  if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="failed($?)"; fi
  end=$(date +%s.%N)
  printf '%s\t%s\t%.1f\t%s\n' "$name" "$status" "$(echo "$end - $start" | bc)" "$run_dir" >> "$OUT/checks.tsv"
  echo "   $status"
}

COMMON=(--output_dir="$OUT/runs" --tensorboard=false --overwrite)

check benchmark "" "$PY" bench/bench_training.py $BENCH_ARGS

check lenet_50k "$OUT/runs/lenet_50k" "$PY" -m lth_keras.main "${COMMON[@]}" --experiment=lenet_50k \
  --model=lenet --dataset=mnist --data_dir="$OUT/data/mnist" --validation_size="$VAL" \
  --iterations="$LENET_IT" --eval_every="$LENET_EVAL" --rounds=1

check resnet18_rewind_mp "$OUT/runs/resnet18_rewind_mp" "$PY" -m lth_keras.main "${COMMON[@]}" \
  --experiment=resnet18_rewind_mp --model=resnet18 --dataset=cifar10 --data_dir="$OUT/data/cifar10" \
  --validation_size="$VAL" --iterations="$RESNET_IT" --rewind_iteration="$RESNET_K" \
  --eval_every="$RESNET_EVAL" --rounds=2 --mixed_precision

check lenet_mirrored "$OUT/runs/lenet_mirrored" "$PY" -m lth_keras.main "${COMMON[@]}" \
  --experiment=lenet_mirrored --model=lenet --dataset=mnist --data_dir="$OUT/data/mnist" \
  --validation_size="$VAL" --iterations="$MIRROR_IT" --eval_every="$MIRROR_EVAL" --rounds=2 \
  --strategy=mirrored

echo
"$PY" bench/gpu_check_util.py table "$OUT"
