"""How a long ablation pass tells the user how far it is."""

from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar over positions (``how=True``), a line on standard error every minute
    (``"log"``: runs without a terminal), or nothing (False)."""

    def __init__(self, how: bool | str, lo: int, hi: int, pos: int):
        self.lo, self.hi = lo, hi
        self.bar = None
        self.log_every = 60.0 if how == "log" else None
        self.began = self.last = time.monotonic()
        self.first = pos
        if how is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=hi - lo, initial=pos - lo, unit="pos", desc="ablation",
                            dynamic_ncols=True, smoothing=0.05)

    def update(self, pos: int, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done)
        elif self.log_every is not None and time.monotonic() - self.last >= self.log_every:
            self.last = time.monotonic()
            rate = (pos - self.first) / (self.last - self.began)
            print(f"ablation: position {pos - self.lo:,} of {self.hi - self.lo:,} "
                  f"({rate:,.1f} positions/s, about {(self.hi - pos) / rate / 60:,.1f} min left)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
