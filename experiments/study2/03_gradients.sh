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
BLOCK_SIZE="${BLOCK_SIZE:-3688}"     # 73,760 tokens of PTB valid -> 20 blocks
model="$RUN_DIR/models/$name/best.pt"
case "$name" in lstm_*) states="cell hidden" ;; mamba_*) states="ssm" ;; *) states="hidden" ;; esac
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
        --threads "$THREADS" --no-progress --out "$grads" > "$out/gradients_$state.log" 2>&1
done
# Embedding statistics for the normalisation, both weightings (issue: the original's is
# type weighting, the embedding table; token weighting counts the training text).
for w in type token; do
    stats="$RUN_DIR/gradients/${name}.stats-$w.npz"
    [ -f "$stats" ] && continue
    if [ "$w" = token ]; then text=(--text "$RUN_DIR/data/wsj100.txt"); else text=(); fi
    "$STG" embedding-stats --model "$model" --weighting "$w" "${text[@]}" --out "$stats" \
        > "$out/embedding_stats_$w.txt"
done
