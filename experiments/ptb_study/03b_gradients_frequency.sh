#!/usr/bin/env bash
# Step 3b: the same state gradients with word classes by training frequency (ranks
# 1-100, 101-1000, 1001-5000, 5001-9998, and <unk>), to test the claim that infrequent
# words are remembered better and longer.  Results go to GRAD_DIR/<model>_freq_<state>.h5.
source "$(dirname "$0")/env.sh"
MODEL_ARG="${1:-$MODEL}"
python "$STUDY_DIR/freq_classes.py" "$RUN_DIR/data/train.txt" "$RUN_DIR/freq"
words=()
for f in "$RUN_DIR"/freq/*.txt; do words+=(--class-words "$f"); done
run_state() {
    local state="$1"
    timed "gradients freq $state" "$STG" gradients --model "$MODEL_ARG" \
        --text "$RUN_DIR/data/ptb.valid.txt" --state "$state" --max-delay "$MAX_DELAY" \
        "${words[@]}" --sample-every "$SAMPLE_EVERY" --block-size "$BLOCK_SIZE" \
        --threads "$THREADS" --no-progress ${STOP:+--stop "$STOP"} \
        --out "$GRAD_DIR/${MODEL_NAME}_freq_$state.h5" > "$GRAD_DIR/${MODEL_NAME}_freq_$state.log" 2>&1
    cat "$GRAD_DIR/${MODEL_NAME}_freq_$state.log"
}
for state in $STATES; do run_state "$state" & done
wait
