"""Pacing a send: a token bucket (GCRA) at the provider's rate, counting
recipients, that slows down by 30% after a throttle and recovers by 2% of
the maximum per successful call; and cutting a stream into calls."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class RateLimiter:
    """A token bucket, as a generic cell rate algorithm: ``take(n)`` waits
    until ``n`` more recipients fit in the rate. No burst is banked: calls are
    spread evenly, so a provider with a one-second bucket never sees more
    than its rate. Thread-safe; the rate adapts (AIMD)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.max_rate = float(rate)
        self.rate = float(rate)
        self.clock = clock
        self._next = clock()
        self._lock = threading.Lock()

    def take(self, count: int, stop: threading.Event) -> bool:
        """Wait for room for ``count`` recipients; False if ``stop`` was set."""
        with self._lock:
            now = self.clock()
            start = max(self._next, now)
            self._next = start + count / self.rate
            wait = start - now
        return not stop.wait(wait) if wait > 0 else not stop.is_set()

    def slow_down(self) -> None:
        """The provider throttled: send 30% slower (down to 1/s, or to the
        maximum when that is lower)."""
        with self._lock:
            self.rate = max(min(1.0, self.max_rate), self.rate * 0.7)

    def speed_up(self) -> None:
        """A call went through: recover towards the maximum."""
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate * 0.02)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
