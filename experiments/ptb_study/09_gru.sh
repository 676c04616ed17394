#!/usr/bin/env bash
# Step 9: the same baseline with a GRU cell (experiments/ptb_study/configs/gru_64e_256h.toml,
# everything else unchanged), analysed like the LSTM; a GRU has only the hidden state.
# Then the LSTM and the GRU side by side (compare_models.py).  Run after steps 1-8; the
# LSTM's tables are read from TABLES (as for steps 1-8), the GRU's go to GRU_TABLES.
here="$(cd "$(dirname "$0")" && pwd)"
lstm_tables="${TABLES:-}"
export MODEL_NAME=gru_64e_256h STATES=hidden FIG_PREFIX=gru_
unset ANALYSIS_TAG STATS MODEL
source "$here/env.sh"
lstm_tables="${lstm_tables:-$RUN_DIR/tables}"
export TABLES="${GRU_TABLES:-$RUN_DIR/tables_gru}"
for step in 02_train 03_gradients 04_embedding_stats 05_memory 06_relative_memory 07_probe \
        08_figures; do
    "$here/$step.sh"
done
timed "compare lstm gru" python "$STUDY_DIR/compare_models.py" "$FIG_DIR" \
    "$lstm_tables/compare_lstm_gru.json" \
    "LSTM=$lstm_tables/summary.json" "GRU=$TABLES/summary.json" \
    | tee "$lstm_tables/compare_lstm_gru.txt"
