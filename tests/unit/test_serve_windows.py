"""Per-tenant windows: length bound, tenant bound (LRU), idle eviction, revoke."""

from __future__ import annotations

from stream_warmer.events import AccessEvent
from stream_warmer.serve.windows import TenantWindows
from stream_warmer.settings import WindowSettings


def ev(tenant: str, key: str, ts: int = 0) -> AccessEvent:
    return AccessEvent(tenant, key, ts)


def test_a_window_keeps_the_newest_events_oldest_first() -> None:
    windows = TenantWindows(WindowSettings(length=3))
    for i in range(5):
        windows.append(0, ev("a", str(i)), now=0.0)
    window = windows.window("a")
    assert window is not None
    assert [e.key for e in window.events] == ["2", "3", "4"]
    assert windows.window("nobody") is None


def test_the_least_recently_active_tenant_is_evicted_at_capacity() -> None:
    windows = TenantWindows(WindowSettings(max_tenants=2))
    assert windows.append(0, ev("a", "1"), 0.0) is None
    assert windows.append(0, ev("b", "1"), 0.0) is None
    assert windows.append(0, ev("a", "2"), 0.0) is None  # a is now the most recent
    assert windows.append(1, ev("c", "1"), 0.0) == "b"
    assert len(windows) == 2 and "b" not in windows
    assert windows.evicted["capacity"] == 1


def test_idle_tenants_are_swept_out() -> None:
    windows = TenantWindows(WindowSettings(idle_evict_s=10.0))
    windows.append(0, ev("old", "1"), now=0.0)
    windows.append(0, ev("new", "1"), now=8.0)
    assert windows.evict_idle(now=10.5) == ["old"]
    assert windows.evict_idle(now=11.0) == []
    assert list(windows.evict_idle(now=18.0)) == ["new"]
    assert windows.evicted["idle"] == 2 and len(windows) == 0


def test_revoke_drops_only_the_revoked_partitions() -> None:
    windows = TenantWindows(WindowSettings())
    windows.append(0, ev("a", "1"), 0.0)
    windows.append(1, ev("b", "1"), 0.0)
    windows.append(2, ev("c", "1"), 0.0)
    assert sorted(windows.drop_partitions([0, 2])) == ["a", "c"]
    assert "b" in windows and len(windows) == 1
    assert windows.evicted["revoked"] == 2
