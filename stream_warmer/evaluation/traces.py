"""Streamed trace readers: one ``AccessEvent`` at a time, never the whole file.

Formats:

- ``normalized``: the gzip (or plain) CSV of ``../shared/traces`` with header
  ``ts,tenant,key,size`` (``ts`` in ms or an ordinal; fractions are rounded down).
- ``csv``: libCacheSim's CSV traces, columns chosen by a ``CsvLayout`` (1-based
  like libCacheSim's ``time_field``/``obj_id_field``/``obj_size_field``); the
  tenant is a column or one constant; ``ts`` is multiplied by ``ts_scale``.
- ``oracle``: libCacheSim's ``oracleGeneral`` binary, 24-byte little-endian
  records ``<IQIq`` (uint32 ts in s, uint64 obj_id, uint32 size, int64 next
  access vtime); ``ts`` becomes ms (``ts_scale`` 1000 by default).

Any file that cannot be read as its format raises ``TraceError`` naming the file
and, for text formats, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from stream_warmer.errors import TraceError
from stream_warmer.events import AccessEvent

TraceFormat = Literal["auto", "normalized", "csv", "oracle"]
Progress = Callable[[int], None]
NORMALIZED_HEADER = ["ts", "tenant", "key", "size"]
ORACLE_RECORD = struct.Struct("<IQIq")
PROGRESS_EVERY = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where the fields of a libCacheSim CSV are (1-based columns; 0 = absent)."""

    time_field: int = 1
    obj_id_field: int = 2
    size_field: int = 3
    tenant_field: int = 0
    has_header: bool = True
    delimiter: str = ","

    def __post_init__(self) -> None:
        fields = (self.time_field, self.obj_id_field, self.size_field, self.tenant_field)
        if self.obj_id_field < 1 or min(fields) < 0:
            msg = f"bad CSV layout {self}: obj_id_field must be >= 1, the others >= 0"
            raise ValueError(msg)


def detect_format(path: Path) -> TraceFormat:
    """``oracle`` for ``*.oracleGeneral*``/``*.bin``, ``normalized`` when the header is
    ``ts,tenant,key,size``, else ``csv``."""
    name = path.name.lower()
    if "oraclegeneral" in name or name.endswith((".bin", ".bin.gz")):
        return "oracle"
    with _open_text(path) as fh:
        try:
            first = fh.readline()
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise TraceError(_unreadable(path, exc)) from exc
    return "normalized" if first.strip().split(",") == NORMALIZED_HEADER else "csv"


def read_trace(
    path: Path,
    fmt: TraceFormat = "auto",
    *,
    tenant: str = "t0",
    layout: CsvLayout | None = None,
    ts_scale: float | None = None,
    progress: Progress | None = None,
) -> Iterator[AccessEvent]:
    """Events of ``path`` in file order, in the given (or detected) format."""
    if not path.is_file():
        msg = f"trace file {str(path)!r} does not exist"
        raise TraceError(msg)
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "normalized":
        return read_normalized(path, progress)
    if kind == "oracle":
        scale = 1000.0 if ts_scale is None else ts_scale
        return read_oracle_general(path, tenant, scale, progress)
    return read_libcachesim_csv(path, layout or CsvLayout(), tenant, ts_scale or 1.0, progress)


def read_normalized(path: Path, progress: Progress | None = None) -> Iterator[AccessEvent]:
    """Events of a normalized ``ts,tenant,key,size`` CSV (gzip or plain)."""
    with _open_text(path) as fh:
        rows = csv.reader(fh)
        header = _next_row(rows, path)
        if header != NORMALIZED_HEADER:
            msg = f"{path}: header is {header!r}, expected {','.join(NORMALIZED_HEADER)}"
            raise TraceError(msg)
        n = 0
        try:
            for n, (ts, tenant, key, size) in enumerate(rows, start=1):
                yield AccessEvent(tenant, key, _ms(ts), "get", int(size))
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(n)
        except (ValueError, csv.Error) as exc:
            msg = f"{path}: line {n + 1}: expected ts,tenant,key,size with numbers: {exc}"
            raise TraceError(msg) from exc
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise TraceError(_unreadable(path, exc)) from exc
        if progress is not None:
            progress(n)


def read_libcachesim_csv(
    path: Path,
    layout: CsvLayout,
    tenant: str = "t0",
    ts_scale: float = 1.0,
    progress: Progress | None = None,
) -> Iterator[AccessEvent]:
    """Events of a libCacheSim CSV; missing time = row ordinal, missing size = 1."""
    with _open_text(path) as fh:
        rows = csv.reader(fh, delimiter=layout.delimiter)
        if layout.has_header:
            _next_row(rows, path)
        n = 0
        try:
            for n, row in enumerate(rows, start=1):
                yield _csv_event(row, layout, tenant, ts_scale, n - 1)
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(n)
        except (ValueError, IndexError, csv.Error) as exc:
            line = n + (1 if layout.has_header else 0)
            msg = f"{path}: line {line}: does not match the CSV layout {layout}: {exc}"
            raise TraceError(msg) from exc
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise TraceError(_unreadable(path, exc)) from exc
        if progress is not None:
            progress(n)


def _csv_event(row: list[str], layout: CsvLayout, tenant: str, scale: float, i: int) -> AccessEvent:
    key = row[layout.obj_id_field - 1].strip()
    if not key:
        msg = "empty object id"
        raise ValueError(msg)
    ts = int(float(row[layout.time_field - 1]) * scale) if layout.time_field else i
    size = int(row[layout.size_field - 1]) if layout.size_field else 1
    who = row[layout.tenant_field - 1].strip() if layout.tenant_field else tenant
    return AccessEvent(who, key, ts, "get", size)


def read_oracle_general(
    path: Path,
    tenant: str = "t0",
    ts_scale: float = 1000.0,
    progress: Progress | None = None,
) -> Iterator[AccessEvent]:
    """Events of a libCacheSim ``oracleGeneral`` binary (plain or gzip)."""
    chunk_bytes = ORACLE_RECORD.size * 65_536
    n = 0
    with _open_binary(path) as fh:
        while True:
            try:
                chunk = fh.read(chunk_bytes)
            except (OSError, EOFError, zlib.error) as exc:
                raise TraceError(_unreadable(path, exc)) from exc
            if not chunk:
                break
            if len(chunk) % ORACLE_RECORD.size:
                msg = (f"{path}: {len(chunk) % ORACLE_RECORD.size} trailing bytes after record "
                       f"{n + len(chunk) // ORACLE_RECORD.size}; not an oracleGeneral file?")
                raise TraceError(msg)
            for ts, obj_id, size, _next in ORACLE_RECORD.iter_unpack(chunk):
                yield AccessEvent(tenant, str(obj_id), int(ts * ts_scale), "get", size)
            n += len(chunk) // ORACLE_RECORD.size
            if progress is not None:
                progress(n)


def _next_row(rows: Iterator[list[str]], path: Path) -> list[str]:
    try:
        return [cell.strip() for cell in next(rows)]
    except StopIteration:
        msg = f"{path}: file is empty"
        raise TraceError(msg) from None
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error) as exc:
        raise TraceError(_unreadable(path, exc)) from exc


def _ms(ts: str) -> int:
    try:
        return int(ts)
    except ValueError:
        return int(float(ts))


def _magic(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise TraceError(_unreadable(path, exc)) from exc
    if head == _ZSTD_MAGIC:
        msg = f"{path}: zstd-compressed; decompress it first (zstd -d)"
        raise TraceError(msg)
    return head


def _open_binary(path: Path) -> IO[bytes]:
    if _magic(path)[:2] == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _open_text(path: Path) -> IO[str]:
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", newline="")


def _unreadable(path: Path, exc: BaseException) -> str:
    return f"{path}: cannot be read ({type(exc).__name__}: {exc})"


class StderrProgress:
    """A one-line progress report (``label: N events, R ev/s``), at most every ``every_s``.

    Callable with the running event count, as the readers' ``progress`` argument.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stream: IO[str] | None = None,
    ) -> None:
        self._label, self._total, self._every = label, total, every_s
        self._clock = clock
        self._stream = stream if stream is not None else sys.stderr
        self._start = self._last = clock()
        self._count = 0

    def __call__(self, count: int) -> None:
        """Note ``count`` events so far; print when ``every_s`` has passed."""
        self._count = count
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._stream.write("\r" + self._line(now))
            self._stream.flush()

    def close(self) -> None:
        """Print the final line and a newline."""
        self._stream.write("\r" + self._line(self._clock()) + "\n")
        self._stream.flush()

    def _line(self, now: float) -> str:
        rate = self._count / max(now - self._start, 1e-9)
        pct = f" ({100 * self._count / self._total:.0f}%)" if self._total else ""
        return f"{self._label}: {self._count:,} events{pct}, {rate:,.0f} ev/s"
