# Shared settings of the PTB study; every step script sources this file.
# Override any of them from the environment, e.g. `EPOCHS=39 SAMPLE_EVERY=1 ./run_all.sh`.
set -euo pipefail

STUDY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$STUDY_DIR/../.." && pwd)"
# The corpora live beside the repository and are never copied into it.
DATA="${DATA:-$REPO/../shared/data}"
# Everything the study writes (prepared text, models, gradient results, tables) goes here,
# outside the repository; only the figures are copied into docs/figures/study.
RUN_DIR="${RUN_DIR:-$REPO/../runs/ptb_study}"
FIG_DIR="${FIG_DIR:-$REPO/docs/figures/study}"

# Training: the original's baseline schedule is 39 epochs; EPOCHS cuts it after that many
# epochs with the schedule unchanged (learning rate 1.0, x0.8 per epoch from epoch 7).
EPOCHS="${EPOCHS:-39}"
# State gradients: delays 0..MAX_DELAY-1 on PTB valid, every SAMPLE_EVERY-th start position
# (1 = all positions), sums kept per BLOCK_SIZE start positions for confidence intervals.
MAX_DELAY="${MAX_DELAY:-200}"
SAMPLE_EVERY="${SAMPLE_EVERY:-10}"
BLOCK_SIZE="${BLOCK_SIZE:-7376}"        # 73,760 tokens of PTB valid -> 10 blocks
CLASSES="${CLASSES:-ptb}"
# States to analyse; a GRU has only the hidden state (STATES=hidden).
STATES="${STATES:-cell hidden}"
THREADS="${THREADS:-1}"
export OMP_NUM_THREADS="$THREADS"

STG="${STG:-stategrad}"
MODEL_NAME="${MODEL_NAME:-lstm_64e_256h}"
MODEL_DIR="$RUN_DIR/models/$MODEL_NAME"
MODEL="${MODEL:-$MODEL_DIR/best.pt}"
POS_MAP="$RUN_DIR/data/train.pos-map.txt"
# Files derived from one model (embedding statistics, difference vectors) are named after
# ANALYSIS_TAG, so that two checkpoints of one training run do not overwrite each other's.
ANALYSIS_TAG="${ANALYSIS_TAG:-$MODEL_NAME}"
STATS="${STATS:-$RUN_DIR/analysis/$ANALYSIS_TAG.embedding-stats.npz}"
DIFF_PREFIX="$RUN_DIR/analysis/${ANALYSIS_TAG}_diff"
# Figures of the main model are named plainly; give another model a prefix (e.g. gru_).
FIG_PREFIX="${FIG_PREFIX:-}"
GRAD_DIR="${GRAD_DIR:-$RUN_DIR/gradients}"
TABLES="${TABLES:-$RUN_DIR/tables}"

mkdir -p "$RUN_DIR/logs" "$RUN_DIR/analysis" "$GRAD_DIR" "$TABLES"

# Wall time of each step, appended to RUN_DIR/timings.tsv (step, seconds, command).
timed() {
    local name="$1"; shift
    local began; began=$(date +%s.%N)
    "$@"
    local ended; ended=$(date +%s.%N)
    awk -v n="$name" -v a="$began" -v b="$ended" -v c="$*" \
        'BEGIN { printf "%s\t%.1f\t%s\n", n, b - a, c }' >> "$RUN_DIR/timings.tsv"
}
