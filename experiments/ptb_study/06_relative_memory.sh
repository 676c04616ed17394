#!/usr/bin/env bash
# Step 6: relative memory |Gbar_d L n| / s_1 and subspace cosine |V_5 n| of two properties
# given by difference vectors of mean embeddings: plural minus singular common nouns
# (NNS - NN) and past minus present tense verbs (VBD - VBZ,VBP); words taken from the
# gold-tag map, each word's embedding weighted by its count in the training text; words
# with both tags (e.g. both NN and NNS) are left out of both sets.  95% jackknife intervals.
source "$(dirname "$0")/env.sh"
for state in $STATES; do
    for prop in "nns_nn NNS NN" "vbd_vbz VBD VBZ,VBP"; do
        set -- $prop
        name="$1"; a="$2"; b="$3"
        timed "relative-memory $name $state" "$STG" relative-memory \
            "$GRAD_DIR/${MODEL_NAME}_$state.h5" --normalize "$STATS" --model "$MODEL" \
            --diff "$a" "$b" --pos-map "$POS_MAP" --weight-text "$RUN_DIR/data/train.txt" \
            --top-k 5 --ci jackknife --save-vector "${DIFF_PREFIX}_$name.npy" \
            --csv "$TABLES/relmem_${name}_$state.csv" > "$TABLES/relmem_${name}_$state.txt" \
            2> "$TABLES/relmem_${name}_$state.notes"
        cat "$TABLES/relmem_${name}_$state.notes"
        head -n 13 "$TABLES/relmem_${name}_$state.txt"
    done
done
