#!/usr/bin/env bash
# Step 4: statistics of the model's input embeddings over the tokens of the training text
# (mean, covariance, L = cholesky, Z = L^-1) for normalising the gradients to equal variance.
source "$(dirname "$0")/env.sh"
timed "embedding-stats" "$STG" embedding-stats --model "$MODEL" --text "$RUN_DIR/data/train.txt" \
    --out "$STATS" | tee "$TABLES/embedding_stats.txt"
