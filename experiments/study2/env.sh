# Shared settings of the study's second edition; every script here sources this file.
# Models, gradients and other large files go to RUN_DIR outside the repository; the small
# per-model results (perplexities, wall times, analysis tables as JSON) are written under
# experiments/study2/results/<model>/ so that they can be committed as each model finishes.
set -euo pipefail
STUDY2_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$STUDY2_DIR/../.." && pwd)"
DATA="${DATA:-$REPO/../shared/data}"
RUN_DIR="${RUN_DIR:-$REPO/../runs/study2}"
RESULTS="${RESULTS:-$STUDY2_DIR/results}"
# The papers' schedule (SGD 1.0, x0.8 per epoch from epoch 7) cut after EPOCHS epochs:
# on a 2-core machine 39 epochs of every model do not fit (see README.md here).
EPOCHS="${EPOCHS:-15}"
THREADS="${THREADS:-1}"
export OMP_NUM_THREADS="$THREADS"
STG="${STG:-stategrad}"
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/data" "$RESULTS"

# Wall time of a step, appended to RESULTS/<model>/timings.tsv (step, seconds, command).
timed() {
    local file="$1" name="$2"; shift 2
    local began; began=$(date +%s.%N)
    "$@"
    local ended; ended=$(date +%s.%N)
    awk -v n="$name" -v a="$began" -v b="$ended" -v c="$*" \
        'BEGIN { printf "%s\t%.1f\t%s\n", n, b - a, c }' >> "$file"
}
