"""DKIM signing off the event loop: `Signer` runs `dkim.sign` in a thread pool.

Measured (benchmarks/dkim_sign.py, 2 cores, ~5 KB multipart messages, RSA-2048,
2026-12-04): one thread 3,252 signatures/s, a pool of 2 threads 3,668/s, a
pool of 2 processes 4,923/s. cryptography lets go of the GIL for part of the
private-key operation only, so threads scale 1.1x, processes 1.5x. Threads are
chosen: signing alone runs at 3.7x the 1,000 messages/s target, and no pickling of
every message or shipping of the key (cryptography's keys do not pickle) to
worker processes. End to end (benchmarks/email_load) the limit is the rest
of the message's Python, not signing: a process pool of 1 or 2 signers was
tried there and gained nothing beyond the VM's run-to-run noise.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from carriers.email.dkim import DEFAULT_SIGNED_HEADERS, DkimKey, sign

__all__ = ["Signer"]


class Signer:
    """``await signer.sign(message, key)`` returns the DKIM-Signature field to prepend."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dkim")

    async def sign(
        self,
        message: bytes,
        key: DkimKey,
        *,
        headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
        timestamp: int | None = None,
        expire: int | None = None,
    ) -> bytes:
        """`carriers.email.dkim.sign` in the pool; its DkimError propagates."""
        call = functools.partial(
            sign, message, key, headers=tuple(headers), timestamp=timestamp, expire=expire
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stop the pool; signatures in progress finish, queued ones are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)
