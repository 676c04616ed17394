#!/usr/bin/env bash
# Train (or resume) the models listed in GRID_FILE (default grid.txt), one line per model:
# CELL HIDDEN SEED [DATA]. Start it in the background, once per core to use, and rerun it
# after an interruption (training resumes from the last finished epoch):
#   nohup experiments/study2/grid.sh > grid-1.out 2>&1 &
#   nohup experiments/study2/grid.sh > grid-2.out 2>&1 &
# Workers share the list: each model is taken by one worker (a lock per model, released
# when its worker ends), and a model whose results hold its measures is skipped.
# A step that fails (a full disk, say) stops its worker rather than letting it fail
# every later model the same way; the error is at the end of that step's log in
# results/<model>/ (step logs are appended to, so a resumed step keeps the earlier error).
source "$(dirname "$0")/env.sh"
mkdir -p "$RUN_DIR/locks"
grep -v '^#' "${1:-$STUDY2_DIR/grid.txt}" | while read -r cell hidden seed data; do
    [ -n "$cell" ] || continue
    name="${cell}_${hidden}h_s${seed}_${data:-wsj100}"
    if [ -f "$RESULTS/$name/analysed.json" ]; then echo "$name: done"; continue; fi
    (
        flock -n 9 || { echo "$name: taken by another worker"; exit 0; }
        "$STUDY2_DIR/pipeline.sh" "$cell" "$hidden" "$seed" "${data:-wsj100}"
    ) 9> "$RUN_DIR/locks/$name.lock"
done
