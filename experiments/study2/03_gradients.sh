#!/usr/bin/env bash
# Step 3: state gradients of one trained model on PTB valid (carry semantics, the exact
# derivative over the whole text), delays 0..MAX_DELAY-1, every SAMPLE_EVERY-th start
# position, classes = the PTB tags of the word-type map of the training text, sums kept
# per block of BLOCK_SIZE tokens (20 blocks) for jackknife intervals, noise floors and
# paired comparisons.  Usage: 03_gradients.sh NAME (a model trained by 02_train.sh).
# A killed run resumes from its OUT.partial when started again.
source "$(dirname "$0")/env.sh"
name="$1"; out="$RESULTS/$name"
MAX_DELAY="${MAX_DELAY:-100}"
SAMPLE_EVERY="${SAMPLE_EVERY:-10}"
# The held-out tagged text serves the frequency claim, read on the seeds of the 128-unit
# WSJ models, and the Brown models' own domain; the other data sizes and hidden sizes
# answer questions that PTB valid answers, and skip it (40% of their gradient time).
case "$1" in
    *_128h_s*_wsj100|*_brown*) SEC20="${SEC20:-yes}" ;;
    *) SEC20="${SEC20:-no}" ;;
esac
BLOCK_SIZE="${BLOCK_SIZE:-3688}"     # 73,760 tokens of PTB valid -> 20 blocks
model="$RUN_DIR/models/$name/best.pt"
case "$name" in
    # The cell state is compared with the hidden state on the reference LSTM; the other
    # LSTMs (seeds, sizes, data) give the hidden state only, which every architecture has
    # and which the seed spread and the data comparisons are about: half the LSTM's cost.
    lstm_128h_s1_wsj100) states="${LSTM_STATES:-cell hidden}" ;;
    lstm_*) states="${LSTM_STATES:-hidden}" ;;
    # The Mamba-style LM goes through the generic (forward-mode) engine, whose cost grows
    # with its 4,096-entry scan state: about 10 times the LSTM's per Jacobian here, so
    # fewer delays and start positions, and only its block output (what the softmax reads,
    # as the LSTM's hidden state; 128 entries, so the same matrix size as the others).
    # Its delay 0 holds the residual connection (output = embedding + block): compare
    # from delay 1 on.
    mamba_*) states="output"; MAX_DELAY="${MAMBA_MAX_DELAY:-50}"
             SAMPLE_EVERY="${MAMBA_SAMPLE_EVERY:-100}"; SEC20=no ;;
    *) states="hidden" ;;
esac
mkdir -p "$RUN_DIR/gradients" "$RUN_DIR/classes"
# Besides the papers' grouped classes (ptb: nouns, verbs, ...), one class per fine tag that
# a claim of the papers is about, each from a tag class file named after the tag.
FINE_TAGS="${FINE_TAGS:-NN NNS NNP VB VBD VBZ VBP VBN VBG JJ JJR RB IN DT PRP CD CC MD TO}"
classes=ptb
for tag in $FINE_TAGS; do
    echo "$tag" > "$RUN_DIR/classes/$tag"; classes="$classes,$RUN_DIR/classes/$tag"
done
for state in $states; do
    grads="$RUN_DIR/gradients/${name}_ptbvalid_$state.h5"
    [ -f "$grads" ] && continue
    timed "$out/timings.tsv" "gradients ptb.valid $state" "$STG" gradients --model "$model" \
        --text "$RUN_DIR/data/ptb.valid.txt" --state "$state" --max-delay "$MAX_DELAY" \
        --classes "$classes" --pos-map "$RUN_DIR/data/wsj.pos-map.txt" \
        --sample-every "$SAMPLE_EVERY" --block-size "$BLOCK_SIZE" \
        --threads "$THREADS" --no-progress --out "$grads" >> "$out/gradients_$state.log" 2>&1
done
# Token classes on held-out text with each token's gold tag mapped to universal tags, each
# class split into frequency strata by the word's rank in the model's training text (1-100,
# 101-1000, 1001+, unranked), so that part of speech and frequency are not confounded.
# WSJ models: WSJ section 20 (conll2000.test.txt, not in training; result "sec20"); Brown
# models: the held-out Brown files (result "brownheld").  Every 5th start position, 20 blocks.
train_text="$RUN_DIR/$(sed -n 's/^train = "\(.*\)"/\1/p' "$RUN_DIR/$name.toml")"
case "$name" in
    *_brown*) held=brownheld; tagged=(--tagged "$RUN_DIR/data/brown-heldout.tagged.txt"
              --tagged-format brown --tag-map "$DATA/tagsets/en-brown.map"); held_block=5342 ;;
    *) held=sec20; tagged=(--tagged "$DATA/wsj-pos/conll2000.test.txt"); held_block=2200 ;;
esac
for state in $states; do
    grads="$RUN_DIR/gradients/${name}_${held}_$state.h5"
    [ -f "$grads" ] || [ "$SEC20" != yes ] && continue
    timed "$out/timings.tsv" "gradients $held $state" "$STG" gradients --model "$model" \
        "${tagged[@]}" --classes universal \
        --frequency-bands 100,1000 --frequency-text "$train_text" \
        --state "$state" --max-delay "$MAX_DELAY" --sample-every "${SAMPLE_EVERY_SEC20:-5}" \
        --block-size "$held_block" --threads "$THREADS" --no-progress \
        --out "$grads" >> "$out/gradients_${held}_$state.log" 2>&1
done
# Embedding statistics for the normalisation, both weightings: type (the embedding table,
# each word once, as the original's code) and token (counts of the training text).
for w in type token; do
    stats="$RUN_DIR/gradients/${name}.stats-$w.npz"
    [ -f "$stats" ] && continue
    if [ "$w" = token ]; then text=(--text "$train_text"); else text=(); fi
    "$STG" embedding-stats --model "$model" --weighting "$w" "${text[@]}" --out "$stats" \
        > "$out/embedding_stats_$w.txt"
done
