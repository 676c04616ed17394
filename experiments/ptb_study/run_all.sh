#!/usr/bin/env bash
# The whole study, step by step; wall times land in RUN_DIR/timings.tsv.
# Settings (see env.sh): EPOCHS, SAMPLE_EVERY, BLOCK_SIZE, MAX_DELAY, RUN_DIR, DATA.
set -euo pipefail
here="$(dirname "$0")"
"$here/01_prepare.sh"
"$here/02_train.sh"
"$here/03_gradients.sh"
"$here/03b_gradients_frequency.sh"
"$here/04_embedding_stats.sh"
"$here/03c_segment_check.sh"
"$here/05_memory.sh"
"$here/06_relative_memory.sh"
"$here/07_probe.sh"
"$here/08_figures.sh"
"$here/09_gru.sh"
