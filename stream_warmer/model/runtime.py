"""Where and how the served model runs: device, host staging, and a checked precision.

Needs only torch and numpy (``scripts/gpu_check.py`` uses it as is).

* ``pick_device``: CUDA when present (``auto``), else the CPU; chosen once.
* ``Staging``: inputs go to the device and results come back through pinned host
  buffers with non-blocking copies on CUDA (one synchronisation per batch, on the copy
  back); on the CPU both are plain tensor views.
* ``PrecisionCheck``: a cheaper precision (bf16 autocast) is only adopted after it
  kept the top-k classes of the fp32 model on real traffic. While the check runs, the
  fp32 result is the one served and the candidate's result is only compared; after
  ``predictions`` rows the candidate is adopted if the share of rows whose top-k
  class set matched is at least ``min_agreement``, and dropped for good otherwise.
* ``configure_torch_threads``: torch's CPU threads from the cores this process may
  really use (CPU affinity and the cgroup CPU quota), or ``model.cpu_threads``; every
  entry point that runs torch calls it once at start.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass
class _ThreadsState:
    """What ``configure_torch_threads`` did already in this process."""

    logged: tuple[int, int] | None = None  # (threads, available cores) last logged
    interop_tried: bool = False


_THREADS = _ThreadsState()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _cgroup_paths(proc_cgroup: str, controller: str | None) -> list[str]:
    """This process's cgroup paths in ``/proc/self/cgroup`` for ``controller`` (None: v2)."""
    paths = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if (controller is None and controllers == "") or (
                controller is not None and controller in controllers.split(",")):
            paths.append(path)
    return paths


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/a/b``, ``base/a``, ``base`` for ``/a/b`` (a quota anywhere above applies too;
    in a container the process's own cgroup is usually ``base`` itself)."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(text: str | None) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``)."""
    fields = (text or "").split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(quota: str | None, period: str | None) -> float | None:
    """CPUs of cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no quota)."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs the cgroup CPU quota allows this process (e.g. 1.5), None when unlimited.

    cgroup v2: ``cpu.max`` of the process's cgroup and every ancestor up to ``root``
    (the smallest wins); cgroup v1: ``cpu.cfs_quota_us / cpu.cfs_period_us`` under
    ``root/cpu`` (or ``root/cpu,cpuacct``) the same way.
    """
    listing = _read(proc_cgroup) or ""
    quotas = [_v2_quota(_read(d / "cpu.max"))
              for path in (_cgroup_paths(listing, None) or ["/"])
              for d in _ancestors(root, path)]
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        base = root / mount
        if not base.is_dir():
            continue
        quotas += [_v1_quota(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
                   for path in (_cgroup_paths(listing, "cpu") or ["/"])
                   for d in _ancestors(base, path)]
        break
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def available_cpus(affinity: int | None = None, quota: float | None = None) -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota (rounded
    down: 1.5 CPUs -> 1, a thread more than the quota only gets throttled), at least 1.

    ``affinity`` (a count) and ``quota`` (CPUs) default to what the system says.
    """
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = os.cpu_count() or 1
    if quota is None:
        quota = cgroup_cpu_quota()
    cores = affinity if quota is None else min(affinity, math.floor(quota + 1e-9))
    return max(1, cores)


def configure_torch_threads(requested: int, *, available: int | None = None) -> int:
    """Set torch's CPU threads once at process start; returns the number used.

    ``requested`` is ``model.cpu_threads``: > 0 is used as given (a warning when it is
    more than the available cores), 0 (auto) means ``available_cpus()``: affinity and
    cgroup quota, never more, so one process does not oversubscribe its share. Auto
    cannot know about other processes: two runs side by side on the same cores should
    each set ``STREAM_WARMER_MODEL__CPU_THREADS`` to their share (e.g. 1 each on 2
    cores); oversubscribed torch threads spin at every parallel region, and a training
    round took 52 min instead of minutes that way. Intra-op threads are set each call;
    inter-op threads only at the first (torch refuses them once set or once parallel
    work started, which is ignored). Logged once per distinct value.
    """
    cores = available_cpus() if available is None else max(1, available)
    threads = requested if requested > 0 else cores
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not _THREADS.interop_tried:
        _THREADS.interop_tried = True
        with contextlib.suppress(RuntimeError):  # already set, or parallel work started
            torch.set_num_interop_threads(threads)
    if _THREADS.logged != (threads, cores):
        _THREADS.logged = (threads, cores)
        extra = {"threads": threads, "available_cores": cores,
                 "source": "model.cpu_threads" if requested > 0 else "auto"}
        if requested > cores:
            log.warning("torch cpu threads above the available cores", extra=extra)
        else:
            log.info("torch cpu threads", extra=extra)
    return threads


def pick_device(setting: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU. ``cuda`` without a GPU is an error."""
    if setting == "cuda" and not torch.cuda.is_available():
        msg = "model.device is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')"
        raise RuntimeError(msg)
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def candidate_precision(setting: str, device: torch.device) -> str | None:
    """The precision to try against fp32, or None: ``auto`` tries bf16 on CUDA only."""
    if setting not in PRECISIONS:
        msg = f"model.precision must be one of {PRECISIONS}, got {setting!r}"
        raise ValueError(msg)
    if setting == "bf16" or (setting == "auto" and device.type == "cuda"):
        return "bf16"
    return None


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Staging:
    """Host <-> device copies; pinned, reused buffers and non-blocking copies on CUDA.

    A buffer is only rewritten after the copy that last read it finished: every batch
    ends in ``to_host``, which waits for its own copy back, and the stream runs the
    copies and the kernels in order.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._host: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A pinned host view of ``like``'s shape and dtype, grown by doubling."""
        n = like.numel()
        buf = self._host.get(name)
        if buf is None or buf.dtype != like.dtype or buf.numel() < n:
            size = max(n, 2 * (buf.numel() if buf is not None else 0), 1024)
            buf = torch.empty(size, dtype=like.dtype, pin_memory=True)
            self._host[name] = buf
        return buf[:n].view(like.shape)

    def to_device(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (host) on the device: through a pinned buffer on CUDA."""
        if not self.pinned:
            return tensor.to(self.device)
        host = self._buffer(name, tensor)
        host.copy_(tensor)
        return host.to(self.device, non_blocking=True)

    def to_host(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` (device) as a numpy array; waits for the copy (and what it needs)."""
        if not self.pinned:
            return tensor.detach().cpu().numpy()
        host = self._buffer(name, tensor)
        host.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()  # the copy back is done
        return host.numpy().copy()


@dataclass
class PrecisionCheck:
    """Decide, on real rows, whether ``candidate`` keeps the fp32 top-k (module docstring)."""

    candidate: str | None
    predictions: int = 20_000
    top_k: int = 4
    min_agreement: float = 0.999
    seen: int = 0
    agreed: int = 0
    decided: str | None = None

    def __post_init__(self) -> None:
        if self.candidate is None:
            self.decided = "fp32"

    @property
    def active(self) -> str:
        """The precision whose results are served now."""
        return self.decided or "fp32"

    @property
    def checking(self) -> bool:
        """True while candidate results still have to be compared."""
        return self.decided is None

    def compare(self, reference: torch.Tensor, candidate: torch.Tensor) -> None:
        """Count rows of (N, C) scores whose top-k class sets agree; decide when done."""
        if self.decided is not None or reference.shape[0] == 0:
            return
        k = min(self.top_k, reference.shape[-1])
        ref = reference.float().topk(k, dim=-1).indices.sort(dim=-1).values  # (N, k)
        got = candidate.float().topk(k, dim=-1).indices.sort(dim=-1).values  # (N, k)
        self.agreed += int((ref == got).all(dim=-1).sum())
        self.seen += int(reference.shape[0])
        if self.seen >= self.predictions:
            agreement = self.agreed / self.seen
            self.decided = self.candidate if agreement >= self.min_agreement else "fp32"
            log.info("precision checked", extra={
                "candidate": self.candidate, "agreement": round(agreement, 5),
                "rows": self.seen, "top_k": k, "min_agreement": self.min_agreement,
                "serving": self.decided})

    @property
    def agreement(self) -> float:
        """Top-k agreement so far (1.0 before any row)."""
        return self.agreed / self.seen if self.seen else 1.0

