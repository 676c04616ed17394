#!/usr/bin/env bash
# Step 8: figures for docs/study.md (PNG, into FIG_DIR) and RUN_DIR/tables/summary.json with
# every number the write-up quotes (curves, spans with their jackknife spread, relative
# memory with 95% jackknife intervals).  Optionally (REPORT=1) also the HTML report.
source "$(dirname "$0")/env.sh"
timed "figures $MODEL_NAME" python "$STUDY_DIR/figures.py" "$RUN_DIR" "$FIG_DIR" "$MODEL_NAME" \
    "$GRAD_DIR" "$TABLES" "$MODEL" "$ANALYSIS_TAG" "$STATES" "$FIG_PREFIX" \
    | tee "$TABLES/summary.txt"
if [ "${REPORT:-0}" = 1 ]; then
    timed "report" "$STG" report "$GRAD_DIR/${MODEL_NAME}_cell.h5" "$GRAD_DIR/${MODEL_NAME}_hidden.h5" \
        --label cell --label hidden --normalize "$STATS" \
        --classes all,nouns,verbs,adjectives,determiners,prepositions --log-scale \
        --difference "plural=${DIFF_PREFIX}_nns_nn.npy" \
        --difference "past=${DIFF_PREFIX}_vbd_vbz.npy" \
        --out "$RUN_DIR/report"
fi
