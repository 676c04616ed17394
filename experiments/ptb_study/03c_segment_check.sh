#!/usr/bin/env bash
# Step 3c: the original's segment semantics (segments of 200 tokens, each starting from
# a constant state) on the same sample of positions, cell state, all words only, and
# its memory curve next to the exact carry semantics of step 3 (needs steps 3 and 4).
source "$(dirname "$0")/env.sh"
MODEL_ARG="${1:-$MODEL}"
timed "gradients cell segment" "$STG" gradients --model "$MODEL_ARG" \
    --text "$RUN_DIR/data/ptb.valid.txt" --state cell --max-delay "$MAX_DELAY" \
    --semantics segment --segment-length 200 --sample-every "$SAMPLE_EVERY" \
    --threads "$THREADS" --no-progress --out "$GRAD_DIR/${MODEL_NAME}_cell_segment.h5"
timed "compare semantics" python "$STUDY_DIR/compare_semantics.py" \
    "$GRAD_DIR/${MODEL_NAME}_cell.h5" "$GRAD_DIR/${MODEL_NAME}_cell_segment.h5" "$STATS" \
    | tee "$TABLES/carry_vs_segment.txt"
