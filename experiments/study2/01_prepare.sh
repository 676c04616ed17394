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
# Brown (data type): every 10th of its 500 files (ca10, ca20, ...: every genre) held out as
# the text the Brown models are analysed on, with each token's gold tag; the other 450
# files train, whole (about 1M tokens) and cut to WSJ's size (its first 283,558 tokens'
# lines), so that type and size can be told apart.  Same conventions and vocabulary size.
if [ ! -f "$D/brown100.txt" ]; then
    awk -v held="$D/brown-heldout.tagged.txt" -v rest="$D/brown-train.tagged.txt" '
        /^#FILE/ { n++; out = (n % 10 == 0) ? held : rest }
        { print > out }' "$DATA/brown/brown.tagged.txt"
    "$STG" prepare-tagged "$D/brown-train.tagged.txt" --format brown -o "$D/brown100.txt" \
        --normalize --vocab-size 10000
    mv "$D/brown100.pos-map.txt" "$D/brown.pos-map.txt"
    # The held-out files as LM text too (validation during training, perplexity).
    "$STG" prepare-tagged "$D/brown-heldout.tagged.txt" --format brown \
        -o "$D/brown-heldout.txt" --normalize --pos-map /dev/null --tag-counts /dev/null
fi
# Tokens with <eos>, as training counts them.
awk -v want="$(awk '{ n += NF + 1 } END { print n }' "$D/wsj100.txt")" '{ n += NF + 1; if (n > want) exit; print }' \
    "$D/brown100.txt" > "$D/brownwsjsize.txt"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.valid.txt" "$D/ptb.valid.txt"
ln -sf "$(cd "$DATA/ptb" && pwd)/ptb.test.txt" "$D/ptb.test.txt"
ls -l "$D"
