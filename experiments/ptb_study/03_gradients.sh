#!/usr/bin/env bash
# Step 3: state gradients of the cell and the hidden state on PTB valid (carry semantics,
# the exact derivative over the whole text), delays below MAX_DELAY, PTB word classes
# from the gold-tag map of the training text.  Every SAMPLE_EVERY-th start position is
# used; per-block sums give jackknife confidence intervals.  The two states run side by
# side (one thread each).  A killed run resumes from OUT.partial when started again.
source "$(dirname "$0")/env.sh"
MODEL_ARG="${1:-$MODEL}"
run_state() {
    local state="$1"
    timed "gradients $state" "$STG" gradients --model "$MODEL_ARG" \
        --text "$RUN_DIR/data/ptb.valid.txt" --state "$state" --max-delay "$MAX_DELAY" \
        --classes "$CLASSES" --pos-map "$POS_MAP" \
        --sample-every "$SAMPLE_EVERY" --block-size "$BLOCK_SIZE" \
        --threads "$THREADS" --no-progress ${STOP:+--stop "$STOP"} \
        --out "$GRAD_DIR/${MODEL_NAME}_$state.h5" > "$GRAD_DIR/${MODEL_NAME}_$state.log" 2>&1
    cat "$GRAD_DIR/${MODEL_NAME}_$state.log"
}
for state in $STATES; do run_state "$state" & done
wait
