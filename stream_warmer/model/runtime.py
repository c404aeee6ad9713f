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
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


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

