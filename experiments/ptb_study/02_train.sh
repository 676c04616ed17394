#!/usr/bin/env bash
# Step 2: train the original's baseline (64 embedding, 256 hidden LSTM, 200 steps,
# dropout 0.5, SGD 1.0 decayed by 0.8 from epoch 7, batch 20) for EPOCHS epochs, then
# report perplexity on PTB valid and test.
source "$(dirname "$0")/env.sh"
CONFIG="$RUN_DIR/$MODEL_NAME.toml"
# Paths in the configuration are relative to RUN_DIR; only max_max_epoch is changed.
sed "s/^max_max_epoch = .*/max_max_epoch = $EPOCHS/" \
    "$STUDY_DIR/configs/$MODEL_NAME.toml" > "$CONFIG"
cd "$RUN_DIR"
if [ -f "$MODEL_DIR/last.pt" ]; then resume=--resume; else resume=; fi
timed "train $MODEL_NAME" "$STG" train "$CONFIG" $resume --threads "$THREADS" --no-progress \
    2>&1 | tee -a "logs/train_$MODEL_NAME.out"
# Valid as during training (batch 20 x 200 steps) and, like test, in the original's test
# mode (batch 1, 1 step, state carried over the whole text).
for split in valid test; do
    timed "eval $MODEL_NAME $split" "$STG" eval "$CONFIG" --split "$split" \
        --threads "$THREADS" --no-progress | tee "$TABLES/ppl_${MODEL_NAME}_$split.txt"
done
timed "eval $MODEL_NAME valid test-mode" "$STG" eval "$CONFIG" --split data/ptb.valid.txt \
    --threads "$THREADS" --no-progress | tee "$TABLES/ppl_${MODEL_NAME}_valid_testmode.txt"
