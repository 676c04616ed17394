#!/usr/bin/env bash
# Step 1: the training texts. WSJ (sections 00-01 and 15-18 of ../shared/data/wsj-pos, PTB
# conventions, 10k vocabulary, none of it in PTB valid/test) as in the first edition, and
# nested subsets of it (the first 25% and 50% of its lines) for the data-size comparison.
source "$(dirname "$0")/env.sh"
D="$RUN_DIR/data"
if [ ! -f "$D/wsj100.txt" ]; then
    "$STG" prepare-tagged "$DATA/wsj-pos/conll2000.train.txt" "$DATA/wsj-pos/treebank-sample.pos" \
        -o "$D/wsj100.txt" --normalize --vocab-size 10000 \
        --check "$DATA/ptb/ptb.valid.txt" --check "$DATA/ptb/ptb.test.txt"
    mv "$D/wsj100.pos-map.txt" "$D/wsj.pos-map.txt"
fi
n=$(wc -l < "$D/wsj100.txt")
head -n $((n / 4)) "$D/wsj100.txt" > "$D/wsj25.txt"
head -n $((n / 2)) "$D/wsj100.txt" > "$D/wsj50.txt"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.valid.txt" "$D/ptb.valid.txt"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.test.txt" "$D/ptb.test.txt"
ls -l "$D"
