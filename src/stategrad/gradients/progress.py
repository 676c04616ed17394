"""How a long pass tells the user how far it is."""

from __future__ import annotations

import sys
import time


class _Progress:
    """A progress bar (``how=True``), a line to standard error every minute (``"log"``:
    runs without a terminal), or nothing."""

    def __init__(self, how: bool | str, start: int, end: int, k: int):
        self.start, self.end = start, end
        self.bar = None
        self.log_every = 60.0 if how == "log" else None
        self.began = self.last_log = time.monotonic()
        if how is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=end - start, initial=k - start, unit="pos",
                            desc="state gradients", dynamic_ncols=True, smoothing=0.05)

    def update(self, k: int, steps_done: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.log_every is not None and time.monotonic() - self.last_log >= self.log_every:
            self.last_log = time.monotonic()
            rate = steps_done / (self.last_log - self.began)
            print(f"state gradients: step {k - self.start:,} of {self.end - self.start:,} "
                  f"({rate:,.1f} positions/s, about {(self.end - k) / rate / 60:,.1f} min left)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
