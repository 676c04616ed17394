#!/usr/bin/env bash
# Step 7: POS probe on the model's input embeddings: logistic regression from a word's
# embedding to its gold tag, accuracy on held-out words; fine PTB tags from the word ->
# tags map (one example per (word, tag) pair) and the 12 universal tags from running
# tagged text (one example per token of the WSJ test section, normalised like training).
# Each on PROBE_SPLITS random splits of the words into training and held out.
source "$(dirname "$0")/env.sh"
PROBE_SPLITS="${PROBE_SPLITS:-10}"
timed "probe ptb-tags" "$STG" probe --model "$MODEL" --pos-map "$POS_MAP" --splits "$PROBE_SPLITS" \
    --confusion "$TABLES/probe_ptb_confusion.csv" | tee "$TABLES/probe_ptb.txt"
timed "probe universal" "$STG" probe --model "$MODEL" \
    --tagged "$DATA/wsj-pos/conll2000.test.txt" --normalize-text --splits "$PROBE_SPLITS" \
    --tag-map "$DATA/tagsets/en-ptb.map" \
    --confusion "$TABLES/probe_universal_confusion.csv" | tee "$TABLES/probe_universal.txt"
