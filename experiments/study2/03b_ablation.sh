#!/usr/bin/env bash
# Step 3b: the behavioural cross-check beside the gradient curves: context ablation on PTB
# valid. The word at t is replaced by <unk> and the increase of the loss at t + d is
# measured from the exact state before t, per class of the word at t (the same classes as
# 03_gradients.sh) and distance d = 1..MAX_DISTANCE, every 10th position, 20 blocks, 95%
# jackknife intervals.  Usage: 03b_ablation.sh NAME.  Writes results/NAME/ablation.json.
# In float64: beyond 20 steps the KL is 1e-4 to 1e-5 nats, which float32's vocabulary-wide
# sums cannot resolve (the Mamba-style LM's came out negative beyond its convolution).
source "$(dirname "$0")/env.sh"
name="$1"; out="$RESULTS/$name"
[ -s "$out/ablation.json" ] && exit 0
FINE_TAGS="${FINE_TAGS:-NN NNS NNP VB VBD VBZ VBP VBN VBG JJ JJR RB IN DT PRP CD CC MD TO}"
classes=ptb
for tag in $FINE_TAGS; do classes="$classes,$RUN_DIR/classes/$tag"; done
timed "$out/timings.tsv" "ablation ptb.valid" "$STG" ablation \
    --model "$RUN_DIR/models/$name/best.pt" --text "$RUN_DIR/data/ptb.valid.txt" \
    --classes "$classes" --pos-map "$RUN_DIR/data/wsj.pos-map.txt" \
    --max-distance "${MAX_DISTANCE:-50}" --replace unk --sample-every "${SAMPLE_EVERY:-10}" \
    --block-size "${BLOCK_SIZE:-3688}" --threads "$THREADS" --no-progress \
    --dtype "${ABLATION_DTYPE:-float64}" \
    --out "$RUN_DIR/gradients/${name}_ablation.h5" --json "$out/ablation.json" --ci jackknife \
    >> "$out/ablation.log" 2>&1
