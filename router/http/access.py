"""Who may call an HTTP service, and how often: bearer tokens compared in constant
time, and a token bucket per caller. Shared by ``router ingest`` and ``router api``."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """A token bucket per source: ``rate`` requests per second, bursts up to ``burst``."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, source: str) -> float:
        """0 if a request from ``source`` may go now, else the seconds until one may."""
        now = self.clock()
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[source] = (tokens - 1, now)
            return 0.0
        self._buckets[source] = (tokens, now)
        return (1 - tokens) / self.rate


def bearer_token(header: str | None, tokens: Collection[str]) -> str | None:
    """The configured token ``header`` carries as ``Bearer <token>``, or None.

    Every configured token is compared, in constant time each, whatever matches."""
    if not header or not header.startswith("Bearer "):
        return None
    given = header.removeprefix("Bearer ").strip().encode()
    found = None
    for token in tokens:
        if hmac.compare_digest(given, token.encode()) and found is None:
            found = token
    return found
