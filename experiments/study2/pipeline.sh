#!/usr/bin/env bash
# One model of the grid from start to finish: train and evaluate (02_train.sh), state
# gradients on PTB valid (03_gradients.sh), the measures (analyse.py).  Each step is
# skipped when its output exists, so rerunning after an interruption goes on where it was.
# Usage: pipeline.sh CELL HIDDEN SEED [DATA]
source "$(dirname "$0")/env.sh"
cell="$1"; hidden="$2"; seed="$3"; data="${4:-wsj100}"
name="${cell}_${hidden}h_s${seed}_${data}"
out="$RESULTS/$name"
[ -s "$out/ppl_test.txt" ] || "$STUDY2_DIR/02_train.sh" "$cell" "$hidden" "$seed" "$data"
"$STUDY2_DIR/03_gradients.sh" "$name"
"$STUDY2_DIR/03b_ablation.sh" "$name"
if [ ! -f "$out/analysed.json" ]; then
    timed "$out/timings.tsv" analyse python "$STUDY2_DIR/analyse.py" "$name"
fi
