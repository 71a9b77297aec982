"""The store's single database thread, with group commit.

One thread owns the one database connection: SQLite allows one writer at a
time anyway, and a single owner means no lock waits, no "database is locked"
retries, and a plain FIFO order for everything the engine asks.

Two kinds of work go through one queue:

- group writes (`Op`): attempt rows and contact states, the dialer's hot path.
  Everything queued is executed in one transaction and committed together,
  and only then are the callers' futures resolved (one wake-up of the event
  loop per group). So `await create_attempt()` returns only once its row is
  durable, and the INVITE that follows can never be for an attempt the
  database does not know.

  A group is whatever queued up while the previous commit ran: a lone write
  commits at once, and under load groups grow by themselves (2,000 concurrent
  creates: one commit; with `synchronous=FULL`, everything that arrives during
  an fsync shares the next one). `commit_interval` can add a minimum spacing
  between commits, but it is 0 by default: a 5 ms spacing caps a caller that
  awaits its creates one after another at 190 a second, and saves nothing at
  the dialer's rates (measured: 200 creates a second make 200 commits either
  way, each ~0.2 ms).
- jobs (`submit`): everything else, each in its own transaction, after the
  group writes queued before it have been committed. Big work (imports,
  exports, campaign syncs) is cut into many small jobs by the caller, so group
  commits slip in between and the dialer never waits long.

If one write of a group fails, the group is rolled back and replayed one write
per transaction, so the other writes still land and only the faulty one fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from engine.store.types import StoreClosed

log = logging.getLogger("outdial.store")

T = TypeVar("T")
Work = Callable[[Connection], Any]
# Queue a function on the store thread, from any thread: Writer.submit.
Submit = Callable[[Callable[[Connection], T]], "concurrent.futures.Future[T]"]


@dataclass(slots=True)
class Op:
    """A write for the next group commit; `future` (if any) gets its result
    after the commit."""

    fn: Work
    future: asyncio.Future[Any] | None
    what: str


@dataclass(slots=True)
class _Job:
    fn: Work
    future: concurrent.futures.Future[Any]


_STOP = object()
Item = Op | _Job | object


class Writer:
    """Owns the connection; runs group writes and jobs in queue order."""

    def __init__(self, engine: Engine, *, commit_interval: float = 0.0) -> None:
        self.engine = engine
        self.commit_interval = commit_interval
        self.commits = 0  # group commits made (for tests and figures)
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="outdial-store", daemon=True)
        self._closed = False
        self._last_commit = 0.0

    # ----------------------------------------------------------- interface

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        """Queue a job (own transaction); usable from any thread."""
        self._check_open()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, future))
        return future

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run a job and await its result on the event loop."""
        return await asyncio.wrap_future(self.submit(fn))

    def write(self, fn: Work, what: str) -> None:
        """Queue a fire-and-forget group write; a failure is logged."""
        self._check_open()
        self._queue.put(Op(fn, None, what))

    def write_wait(self, fn: Callable[[Connection], T], what: str) -> asyncio.Future[T]:
        """Queue a group write; the future resolves after its commit."""
        self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(Op(fn, future, what))
        return future

    async def flush(self) -> None:
        """Return once everything queued before this call is committed."""
        await self.write_wait(lambda conn: None, "flush")

    async def stop(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    # -------------------------------------------------------------- thread

    def _main(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self._process(conn, self._collect()):
                    pass
        except BaseException:
            log.critical("store thread failed; the store is unusable", exc_info=True)
            raise
        finally:
            self._closed = True
            self._fail_leftovers()

    def _collect(self) -> list[Item]:
        items: list[Item] = [self._queue.get()]
        self._drain(items)
        # Optional pacing: writes wait until commit_interval has passed since
        # the last commit, collecting company; jobs never wait.
        if self.commit_interval > 0 and all(isinstance(i, Op) for i in items):
            remaining = self._last_commit + self.commit_interval - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
                self._drain(items)
        return items

    def _drain(self, items: list[Item]) -> None:
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _process(self, conn: Connection, items: list[Item]) -> bool:
        """Run a batch in queue order; True once the stop marker is reached."""
        group: list[Op] = []
        for item in items:
            if isinstance(item, Op):
                group.append(item)
                continue
            self._commit_group(conn, group)
            group = []
            if isinstance(item, _Job):
                self._run_job(conn, item)
            else:  # _STOP: close() accepts nothing after it
                return True
        self._commit_group(conn, group)
        return False

    def _commit_group(self, conn: Connection, group: list[Op]) -> None:
        if not group:
            return
        try:
            results = [op.fn(conn) for op in group]
            conn.commit()
        except Exception:
            conn.rollback()
            self._replay(conn, group)
            return
        self._last_commit = time.monotonic()
        self.commits += 1
        _resolve([(op, result, None) for op, result in zip(group, results, strict=True)])

    def _replay(self, conn: Connection, group: list[Op]) -> None:
        """One transaction per write, so only the faulty ones fail."""
        outcomes: list[tuple[Op, Any, BaseException | None]] = []
        for op in group:
            try:
                result = op.fn(conn)
                conn.commit()
                outcomes.append((op, result, None))
            except Exception as exc:
                conn.rollback()
                outcomes.append((op, None, exc))
                if op.future is None:
                    log.error("store write failed (%s): %s", op.what, exc, exc_info=exc)
        self._last_commit = time.monotonic()
        self.commits += 1
        _resolve(outcomes)

    def _run_job(self, conn: Connection, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn(conn)
            conn.commit()
        except BaseException as exc:
            conn.rollback()
            job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            job.future.set_result(result)

    def _fail_leftovers(self) -> None:
        closed = StoreClosed("the store is closed")
        outcomes: list[tuple[Op, Any, BaseException | None]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Op):
                outcomes.append((item, None, closed))
            elif isinstance(item, _Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(closed)
        _resolve(outcomes)


def _resolve(outcomes: list[tuple[Op, Any, BaseException | None]]) -> None:
    """Hand results to the event loops, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for op, result, exc in outcomes:
        if op.future is not None:
            by_loop.setdefault(op.future.get_loop(), []).append((op.future, result, exc))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, batch)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle(batch: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in batch:
        if future.done():  # the caller gave up (cancelled); the write stands
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
