"""model.runtime.configure_torch_threads: cores from affinity and cgroup quota, the override."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stream_warmer.model import runtime
from stream_warmer.model.runtime import (
    available_cpus,
    cgroup_cpu_quota,
    configure_torch_threads,
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(("text", "cpus"), [
    ("max 100000", None), ("150000 100000", 1.5), ("200000 100000", 2.0),
    ("50000", 0.5), ("", None), ("junk 100000", None), ("-1 100000", None),
])
def test_cgroup_v2_cpu_max(tmp_path: Path, text: str, cpus: float | None) -> None:
    write(tmp_path / "cpu.max", text)
    write(tmp_path / "self", "0::/")
    assert cgroup_cpu_quota(tmp_path, tmp_path / "self") == cpus


def test_cgroup_v2_takes_the_smallest_quota_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "cpu.max", "max 100000")
    write(root / "app" / "cpu.max", "100000 100000")  # 1 CPU for the parent
    write(root / "app" / "run" / "cpu.max", "300000 100000")  # 3 asked below it
    write(tmp_path / "self", "0::/app/run")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 1.0


def test_cgroup_v2_path_not_visible_falls_back_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cg"  # a container: /proc says the host's path, the mount is ours
    write(root / "cpu.max", "250000 100000")
    write(tmp_path / "self", "0::/kubepods/pod1/abc")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 2.5


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "150000")
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us", "100000")
    write(tmp_path / "self", "4:memory:/job\n2:cpu,cpuacct:/job\n0::/")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 1.5
    write(root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us", "-1")
    assert cgroup_cpu_quota(root, tmp_path / "self") is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "none", tmp_path / "missing") is None


@pytest.mark.parametrize(("affinity", "quota", "cores"), [
    (2, None, 2), (8, 1.5, 1), (8, 2.0, 2), (2, 4.0, 2), (4, 0.5, 1), (1, None, 1),
])
def test_available_cpus_caps_affinity_by_the_quota(affinity: int, quota: float | None,
                                                   cores: int) -> None:
    assert available_cpus(affinity, quota) == cores


def test_available_cpus_reads_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 2, 5, 7})
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: None)
    assert available_cpus() == 4
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: 3.0)
    assert available_cpus() == 3


class FakeTorch:
    """Records thread calls instead of changing this test process's torch."""

    def __init__(self, threads: int = 16, interop_error: bool = False) -> None:
        self.threads = threads
        self.interop: list[int] = []
        self.interop_error = interop_error

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, n: int) -> None:
        self.threads = n

    def set_num_interop_threads(self, n: int) -> None:
        self.interop.append(n)
        if self.interop_error:
            msg = "Error: cannot set number of interop threads after parallel work has started"
            raise RuntimeError(msg)


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeTorch) -> FakeTorch:
    """``fake`` in place of torch's thread calls, and a fresh "logged / interop" state."""
    for name in ("get_num_threads", "set_num_threads", "set_num_interop_threads"):
        monkeypatch.setattr(f"torch.{name}", getattr(fake, name))
    monkeypatch.setattr(runtime, "_THREADS", runtime._ThreadsState())
    return fake


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTorch:
    return install(monkeypatch, FakeTorch())


def test_auto_uses_the_available_cores(fake: FakeTorch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    assert configure_torch_threads(0) == 3
    assert fake.threads == 3 and fake.interop == [3]


def test_the_setting_overrides_auto(fake: FakeTorch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stream_warmer.model.runtime"):
        assert configure_torch_threads(1, available=2) == 1
        assert fake.threads == 1
        assert configure_torch_threads(4, available=2) == 4  # as asked, with a warning
    assert fake.threads == 4
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert caplog.records[0].source == "model.cpu_threads"  # type: ignore[attr-defined]


def test_interop_is_tried_once_and_its_error_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = install(monkeypatch, FakeTorch(interop_error=True))
    assert configure_torch_threads(0, available=2) == 2  # no RuntimeError
    assert configure_torch_threads(1, available=2) == 1
    assert torch.interop == [2] and torch.threads == 1


def test_logged_once_per_value(fake: FakeTorch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stream_warmer.model.runtime"):
        for _ in range(3):
            assert configure_torch_threads(0, available=2) == 2
    assert len(caplog.records) == 1
    assert caplog.records[0].threads == 2  # type: ignore[attr-defined]
    assert caplog.records[0].source == "auto"  # type: ignore[attr-defined]


def test_real_torch_gets_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(runtime, "_THREADS", runtime._ThreadsState(interop_tried=True))
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert configure_torch_threads(0) == available_cpus()
        assert torch.get_num_threads() == available_cpus()
    finally:
        torch.set_num_threads(before)
