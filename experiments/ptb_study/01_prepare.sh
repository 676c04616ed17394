#!/usr/bin/env bash
# Step 1: PTB-style training text from the WSJ files with gold tags (sections 00-01 and
# 15-18, none of which overlaps PTB valid/test), the word -> gold tags map the classes
# come from, and links to PTB valid/test.
source "$(dirname "$0")/env.sh"
mkdir -p "$RUN_DIR/data"
timed prepare "$STG" prepare-tagged \
    "$DATA/wsj-pos/conll2000.train.txt" "$DATA/wsj-pos/treebank-sample.pos" \
    -o "$RUN_DIR/data/train.txt" --normalize --vocab-size 10000 \
    --check "$DATA/ptb/ptb.valid.txt" --check "$DATA/ptb/ptb.test.txt" \
    | tee "$RUN_DIR/logs/prepare.out"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.valid.txt" "$RUN_DIR/data/ptb.valid.txt"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.test.txt" "$RUN_DIR/data/ptb.test.txt"
