"""Streaming CSV reading with per-line damage reports, and the error file.

A CSV file of any size is read one record at a time. Damage is located and
reported per record, never fatal: a record with undecodable bytes, the wrong
number of columns or broken quoting is yielded with its line number and the
reason, and reading goes on. Only a file whose *header* cannot be read (empty,
UTF-16, binary, not in the stated encoding) is refused as a whole, with a
BadRequest naming the file and saying what to do.
"""

from __future__ import annotations

import codecs
import csv
import io
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from engine.errors import BadRequest
from engine.store.types import ImportSummary

_DELIMITERS = (",", ";", "\t", "|")
_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
# A record longer than this many lines is almost surely an unclosed quote
# that swallowed the following rows: say so in its reason.
_MULTILINE_HINT = 3

Record = tuple[int, list[str], str | None]  # (line, fields, reason if damaged)
T = TypeVar("T")


class CsvSource:
    """One CSV file, opened for streaming: `header`, then `records()`."""

    def __init__(self, path: Path, encoding: str = "utf-8") -> None:
        self.path = path
        self.name = str(path)
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            raise BadRequest(f"{self.name}: unknown encoding {encoding!r}") from None
        self.encoding = info.name
        # Byte-wise line splitting needs an ASCII-compatible encoding
        # (UTF-8, Latin-1, cp1252...); UTF-16/32 go through a text decoder.
        self._bytewise = "a,\n".encode(self.encoding, "replace") == b"a,\n"
        try:
            self._file: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise BadRequest(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        self._bad_lines: deque[int] = deque()
        self._line = 0
        try:
            self._check_start()
            self._lines = self._byte_lines() if self._bytewise else self._text_lines()
            self._reader = csv.reader(self._lines, delimiter=self.delimiter, strict=False)
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    # ----------------------------------------------------------- the start

    def _check_start(self) -> None:
        head = self._file.read(4096)
        self._file.seek(0)
        if not head.strip():
            raise BadRequest(f"{self.name}: the file is empty (expected a header line)")
        if self._bytewise:
            for bom, family in _BOMS.items():
                if head.startswith(bom):
                    raise BadRequest(
                        f"{self.name}: the file is {family} (it starts with a {family} byte "
                        f"order mark); save it as UTF-8, or give its encoding"
                    )
            first_line = head.split(b"\n", 1)[0]
            if b"\x00" in first_line:
                raise BadRequest(
                    f"{self.name}: line 1 contains NUL bytes: not a {self.encoding} text file "
                    f"(UTF-16 without a byte order mark?); save it as UTF-8"
                )
        text = head.decode("latin-1" if self._bytewise else self.encoding, "replace")
        self.delimiter = _sniff_delimiter(text.split("\n", 1)[0])

    def _read_header(self) -> list[str]:
        try:
            header = next(self._reader)
        except StopIteration:
            raise BadRequest(f"{self.name}: the file is empty (expected a header line)") from None
        except csv.Error as exc:
            raise BadRequest(f"{self.name}: line 1: unreadable header: {exc}") from None
        if self._bad_lines:
            raise BadRequest(
                f"{self.name}: line 1 is not valid {self.encoding}; save the file as UTF-8, "
                f"or give its encoding (for example latin-1 or cp1252)"
            )
        names = [h.strip() for h in header]
        if not any(names):
            raise BadRequest(f"{self.name}: line 1: the header is empty")
        names = [n or f"column_{i + 1}" for i, n in enumerate(names)]
        seen: set[str] = set()
        for n in names:
            if n.lower() in seen:
                raise BadRequest(f"{self.name}: line 1: column {n!r} appears twice in the header")
            seen.add(n.lower())
        return names

    # -------------------------------------------------------------- records

    def _byte_lines(self) -> Iterator[str]:
        encoding = self.encoding
        first = True
        for raw in self._file:
            self._line += 1
            if first and encoding == "utf-8" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # Excel's "CSV UTF-8": harmless, dropped
            first = False
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                self._bad_lines.append(self._line)
                yield raw.decode(encoding, "replace")

    def _text_lines(self) -> Iterator[str]:
        text = io.TextIOWrapper(self._file, encoding=self.encoding, newline="")
        try:
            for line in text:
                self._line += 1
                yield line
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"{self.name}: not valid {self.encoding} after line {self._line}: {exc.reason}"
            ) from None
        finally:
            text.detach()

    def records(self) -> Iterator[Record]:
        """Every data record with its first line number; damaged ones carry
        the reason (and whatever fields could be read)."""
        reader, width = self._reader, len(self.header)
        bad = self._bad_lines
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, [], f"unreadable CSV: {exc}"
                continue
            end = reader.line_num
            if bad:
                while bad and bad[0] < start:
                    bad.popleft()
                if bad and bad[0] <= end:
                    yield start, fields, f"undecodable bytes (not valid {self.encoding})"
                    continue
            if not any(fields):
                continue  # a blank line, or a row of empty cells
            if len(fields) != width:
                reason = f"expected {width} columns, found {len(fields)}"
                if end - start >= _MULTILINE_HINT:
                    reason += f" (the record runs to line {end}: an unclosed quote?)"
                yield start, fields, reason
                continue
            yield start, fields, None


def _sniff_delimiter(first_line: str) -> str:
    """The header's most frequent candidate delimiter (a comma if none)."""
    counts = [(first_line.count(d), d) for d in _DELIMITERS]
    best = max(counts, key=lambda c: c[0])
    return best[1] if best[0] > 0 else ","


class ErrorReport:
    """The error CSV: `line, reason`, then the original record's fields.

    Created on the first error, so a clean import leaves no file behind
    (unless `always` asks for one even when empty).
    """

    def __init__(self, path: Path | None, header: list[str], *, always: bool = False) -> None:
        self.path = path
        self.count = 0
        self._header = header
        self._file: IO[str] | None = None
        self._writer: Any = None
        if always:
            self._open()

    def _open(self) -> None:
        if self.path is None:
            return
        try:
            self._file = self.path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise BadRequest(
                f"{self.path}: cannot write the error file: {exc.strerror or exc}"
            ) from None
        self._writer = csv.writer(self._file)
        self._writer.writerow(["line", "reason", *self._header])

    def add(self, line: int, reason: str, fields: list[str]) -> None:
        self.count += 1
        if self._writer is None:
            self._open()
        if self._writer is not None:
            self._writer.writerow([line, reason, *fields])

    def add_sorted(self, rows: list[tuple[int, str, list[str]]]) -> None:
        for line, reason, fields in sorted(rows, key=lambda r: r[0]):
            self.add(line, reason, fields)

    @property
    def written(self) -> str | None:
        """The path, if the file exists."""
        return str(self.path) if self._file is not None else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def default_error_path(csv_path: Path) -> Path:
    """Where errors go when the caller names no file: beside the input."""
    return csv_path.with_name(csv_path.stem + ".errors.csv")


@dataclass
class Tally:
    """Counts of an import (see ImportSummary)."""

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    invalid: int = 0
    warnings: int = 0

    def summary(self, error_path: str | None, started: float) -> ImportSummary:
        """The summary of an import begun at perf_counter() `started`."""
        return ImportSummary(
            rows=self.rows,
            imported=self.imported,
            duplicates=self.duplicates,
            invalid=self.invalid,
            error_path=error_path,
            seconds=round(time.perf_counter() - started, 3),
            warnings=self.warnings,
        )


Rejection = tuple[int, str, list[str]]  # (line, reason, fields as read)
# A record -> (item to store or None, reason: why rejected, or what was dropped)
Classify = Callable[[int, list[str], str | None], tuple[T | None, str | None]]
# Store a batch (on the database thread, waited for) -> the duplicates it refused
Ship = Callable[[list[T]], list[Rejection]]


def run_batches(
    records: Iterable[Record],
    classify: Classify[T],
    ship: Ship[T],
    report: ErrorReport,
    *,
    batch_rows: int,
    cancel: threading.Event | None = None,
) -> Tally:
    """Classify records, ship them in batches, report rejections in line order.

    Not pipelined on purpose: with SQLite both sides are Python-bound, and
    parsing batch k+1 during batch k's insert only makes them fight over the
    GIL (the insert job then takes ~45 % longer, holding up the dialer's
    group commits queued behind it, for no gain in total time).
    """
    tally = Tally()
    batch: list[T] = []
    rejected: list[Rejection] = []

    def flush() -> None:
        duplicates = ship(batch)
        tally.duplicates += len(duplicates)
        tally.imported += len(batch) - len(duplicates)
        report.add_sorted(rejected + duplicates)
        batch.clear()
        rejected.clear()

    for line, fields, damage in records:
        tally.rows += 1
        item, note = classify(line, fields, damage)
        if item is None:
            tally.invalid += 1
            rejected.append((line, note or "invalid", fields))
            continue
        if note is not None:
            tally.warnings += 1
            rejected.append((line, note, fields))
        batch.append(item)
        if len(batch) >= batch_rows:
            flush()
            if cancel is not None and cancel.is_set():
                return tally
    flush()
    return tally
