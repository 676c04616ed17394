#!/usr/bin/env bash
# One model of the grid from start to finish: train and evaluate (02_train.sh), state
# gradients on PTB valid (03_gradients.sh), the measures (analyse.py).  Each step is
# skipped when its output exists, so rerunning after an interruption goes on where it was.
# Usage: pipeline.sh CELL HIDDEN SEED [DATA]
# Once a model is analysed its gradient files (2 GB per text at 128 units, 4 GB at 256)
# are removed: the tables and figures read only results/<model>/, and a 256-unit
# gradient run needs three times its file's size while it runs (the checkpoint of its
# blocks, the blocks themselves, the result), so a disk full of old files stops the
# grid.  KEEP_GRADIENTS=1 keeps them (to rerun analyse.py with other settings).
source "$(dirname "$0")/env.sh"
cell="$1"; hidden="$2"; seed="$3"; data="${4:-wsj100}"
name="${cell}_${hidden}h_s${seed}_${data}"
out="$RESULTS/$name"
if [ -f "$out/analysed.json" ]; then echo "$name: analysed already ($out)"; exit 0; fi
[ -s "$out/ppl_test.txt" ] || "$STUDY2_DIR/02_train.sh" "$cell" "$hidden" "$seed" "$data"
"$STUDY2_DIR/03_gradients.sh" "$name"
"$STUDY2_DIR/03b_ablation.sh" "$name"
timed "$out/timings.tsv" analyse python "$STUDY2_DIR/analyse.py" "$name"
if [ "${KEEP_GRADIENTS:-0}" != 1 ]; then
    rm -f "$RUN_DIR/gradients/${name}"_{ptbvalid,sec20,brownheld}_{hidden,cell,output}.h5
fi
