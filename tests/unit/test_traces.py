"""Streamed trace readers: normalized CSV, libCacheSim CSV and oracleGeneral."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import pytest

from stream_warmer.errors import TraceError
from stream_warmer.evaluation.traces import (
    CsvLayout,
    StderrProgress,
    detect_format,
    read_libcachesim_csv,
    read_normalized,
    read_trace,
)
from stream_warmer.events import AccessEvent

NORMALIZED = "ts,tenant,key,size\n0,t17,42,1\n242.639,cp0,43,512\n"


def write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    return path


def test_normalized_gzip(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "x.csv.gz", NORMALIZED)
    assert detect_format(path) == "normalized"
    assert list(read_trace(path)) == [
        AccessEvent("t17", "42", 0, "get", 1),
        AccessEvent("cp0", "43", 242, "get", 512),  # fractional ms rounded down
    ]


def test_normalized_plain_text_and_progress(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(NORMALIZED)
    seen: list[int] = []
    assert len(list(read_normalized(path, progress=seen.append))) == 2
    assert seen == [2]


def test_normalized_is_streamed(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "x.csv.gz", NORMALIZED + "3,t,k,1\n" * 100 + "bad line\n")
    events = read_trace(path)
    assert next(events) == AccessEvent("t17", "42", 0, "get", 1)  # before the bad line
    with pytest.raises(TraceError, match="line 104"):
        list(events)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,who,what\n0,a,1\n", "header"),
        ("ts,tenant,key,size\n0,a,1\n", "line 2"),
        ("ts,tenant,key,size\nzero,a,1,1\n", "line 2"),
        ("", "empty"),
    ],
)
def test_normalized_bad_files(tmp_path: Path, text: str, match: str) -> None:
    path = write_gz(tmp_path / "bad.csv.gz", text)
    with pytest.raises(TraceError, match=match):
        list(read_normalized(path))


def test_truncated_gzip_is_a_trace_error(tmp_path: Path) -> None:
    good = write_gz(tmp_path / "good.csv.gz", NORMALIZED + "1,t,5,1\n" * 5000)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(TraceError, match="cannot be read"):
        list(read_normalized(cut))


def test_missing_and_zstd_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(tmp_path / "nope.csv.gz")
    zst = tmp_path / "t.oracleGeneral.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 30)
    with pytest.raises(TraceError, match="zstd"):
        list(read_trace(zst))


def test_libcachesim_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "lcs.csv"
    path.write_text("time;id;bytes;vol\n10;abc;100;v1\n11;7;5;v2\n")
    layout = CsvLayout(time_field=1, obj_id_field=2, size_field=3, tenant_field=4, delimiter=";")
    assert detect_format(path) == "csv"
    assert list(read_trace(path, "csv", layout=layout, ts_scale=1000)) == [
        AccessEvent("v1", "abc", 10_000, "get", 100),
        AccessEvent("v2", "7", 11_000, "get", 5),
    ]


def test_libcachesim_csv_without_time_size_or_header(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("x1\nx2\n")
    layout = CsvLayout(time_field=0, obj_id_field=1, size_field=0, has_header=False)
    events = list(read_libcachesim_csv(path, layout, tenant="solo"))
    assert events == [AccessEvent("solo", "x1", 0, "get", 1),
                      AccessEvent("solo", "x2", 1, "get", 1)]


def test_libcachesim_csv_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "lcs.csv"
    path.write_text("a,b,c\n1,2,3\n1,2\n")
    with pytest.raises(TraceError, match="line 3"):
        list(read_libcachesim_csv(path, CsvLayout()))
    with pytest.raises(ValueError, match="obj_id_field"):
        CsvLayout(obj_id_field=0)


def oracle_bytes(records: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(struct.pack("<IQIq", *r) for r in records)


def test_oracle_general_plain_and_gzip(tmp_path: Path) -> None:
    data = oracle_bytes([(1, 2**63 + 5, 4096, 3), (2, 7, 512, -1)])
    plain = tmp_path / "t.oracleGeneral.bin"
    plain.write_bytes(data)
    expected = [AccessEvent("vm", str(2**63 + 5), 1000, "get", 4096),
                AccessEvent("vm", "7", 2000, "get", 512)]
    assert detect_format(plain) == "oracle"
    assert list(read_trace(plain, tenant="vm")) == expected
    packed = tmp_path / "t.oracleGeneral.bin.gz"
    packed.write_bytes(gzip.compress(data))
    assert list(read_trace(packed, "oracle", tenant="vm")) == expected


def test_oracle_general_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(oracle_bytes([(1, 2, 3, 4)]) + b"\0" * 5)
    with pytest.raises(TraceError, match="trailing bytes"):
        list(read_trace(path))


def test_stderr_progress_is_rate_limited() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = StderrProgress("scan", total=1000, every_s=1.0, clock=lambda: now[0], stream=out)
    bar(100)
    assert out.getvalue() == ""
    now[0] = 2.0
    bar(500)
    assert "500 events (50%), 250 ev/s" in out.getvalue()
    now[0] = 4.0
    bar.close()
    assert out.getvalue().endswith("500 events (50%), 125 ev/s\n")
