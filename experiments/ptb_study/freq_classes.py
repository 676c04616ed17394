"""Word classes by training frequency, for the frequency part of the study.

Usage: python freq_classes.py TRAIN_TEXT OUT_DIR

Ranks the words of TRAIN_TEXT by count (<unk> left out) and writes one word list per
rank band (OUT_DIR/freq_0001_0100.txt, ...) plus OUT_DIR/unk.txt, for
`stategrad gradients --class-words`.  <eos> is in no band (it is not in the text).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

BANDS = ((1, 100), (101, 1000), (1001, 5000), (5001, 10000))


def main(train: str, out_dir: str) -> None:
    counts = Counter(Path(train).read_text(encoding="utf-8").split())
    words = [w for w, _ in counts.most_common() if w != "<unk>"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for lo, hi in BANDS:
        band = words[lo - 1 : hi]
        if not band:
            continue
        path = out / f"freq_{lo:04d}_{min(hi, len(words)):04d}.txt"
        path.write_text("\n".join(band) + "\n", encoding="utf-8")
        print(f"{path.name}: {len(band)} words, counts {counts[band[-1]]}-{counts[band[0]]}, "
              f"{sum(counts[w] for w in band)} tokens")
    (out / "unk.txt").write_text("<unk>\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
