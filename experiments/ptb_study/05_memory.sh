#!/usr/bin/env bash
# Step 5: normalised memory curves (sum of the top singular values of Gbar_d L) and memory
# spans (first delay below 0.1 x delay 0) per POS class, cell and hidden state, with 95%
# jackknife bands over the blocks and each span's range over the jackknife replicates.
source "$(dirname "$0")/env.sh"
for state in $STATES; do
    timed "memory $state" "$STG" memory "$GRAD_DIR/${MODEL_NAME}_$state.h5" --normalize "$STATS" \
        --fraction 0.1 --ci jackknife \
        --csv "$TABLES/memory_$state.csv" --json "$TABLES/memory_$state.json" \
        > "$TABLES/memory_$state.txt"
    tail -n 18 "$TABLES/memory_$state.txt"
    timed "svd $state" "$STG" svd "$GRAD_DIR/${MODEL_NAME}_$state.h5" --normalize "$STATS" \
        --classes all --csv "$TABLES/svd_all_$state.csv" > /dev/null
done
