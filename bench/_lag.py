"""Event-loop lag, as the benchmarks measure it: a 1 ms ticker and how far each sleep overshoots."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

__all__ = ["LagMeter", "LagStats"]


@dataclass(frozen=True)
class LagStats:
    max_ms: float
    p99_ms: float
    ticks: int


class LagMeter:
    """Use as `with LagMeter() as lag:` inside a running loop; read `lag.stats()` afterwards."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags_ms.append((time.perf_counter() - before - 0.001) * 1000)

    def __enter__(self) -> LagMeter:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def stats(self) -> LagStats:
        lags = sorted(self.lags_ms) or [0.0]
        return LagStats(max_ms=lags[-1], p99_ms=lags[int(len(lags) * 0.99)], ticks=len(self.lags_ms))

    def summary(self) -> str:
        s = self.stats()
        return f"max {s.max_ms:6.1f} ms, p99 {s.p99_ms:5.1f} ms ({s.ticks} ticks)"

    @property
    def max_ms(self) -> float:
        return self.stats().max_ms


async def _measure(seconds: float) -> LagMeter:
    with LagMeter() as lag:
        await asyncio.sleep(seconds)
    return lag


if __name__ == "__main__":
    # `python -m bench._lag SECONDS`: an idle loop's lag over that long, for a benchmark to run beside
    # what it measures (the machine's own share of a lag figure).
    import sys

    print(asyncio.run(_measure(float(sys.argv[1]))).summary(), flush=True)
