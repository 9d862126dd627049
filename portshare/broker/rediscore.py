"""
The Redis broker's reconnect backoff, sans I/O.
"""

from __future__ import annotations

from typing import Any


class Backoff:
    """
    Exponential backoff between reconnection attempts: C{initial}, doubled after each
    failure up to C{maximum}, each delay spread by up to C{jitter} (a fraction) with the
    C{random} the caller injects; L{reset} once connected.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        jitter: float = 0.2,
        random: Any = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._random = random or (lambda: 0.5)
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        base = min(self.maximum, self.initial * (2**self.attempts))
        self.attempts += 1
        spread = 1 + self.jitter * (2 * self._random() - 1)
        return max(0.0, min(self.maximum, base * spread))

    def reset(self) -> None:
        self.attempts = 0
