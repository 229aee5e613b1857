"""The memory guard (issue #18): a run that would outgrow its budget lowers its
training sample and says so, instead of being killed by the kernel.

Training memory of the global models grows with the customers they stack over
cutoffs; what one training customer costs was measured (docs/scaling.md) and is
given by the caller. Scoring runs store by store and needs no guard."""

from __future__ import annotations

import ctypes
import gc
import platform
import sys
from dataclasses import dataclass

from storepulse import settings

# Below this the learned model would not be worth training; the guard never asks for less.
MIN_TRAINING_CUSTOMERS = 20_000


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Allowance:
    customers: int | None  # the training sample to use (None = all)
    note: str | None  # set when the guard lowered it: what and why, for people


def training_allowance(
    requested: int | None,
    customers: int,
    bytes_per_customer: int,
    what: str,
    budget: int | None = None,
) -> Allowance:
    """The training sample that fits the memory budget (STOREPULSE_MEMORY_BUDGET).

    requested: the configured cap (None or 0 = all `customers`)."""
    budget = settings.memory_budget_bytes() if budget is None else budget
    wanted = min(requested or customers, customers)
    fits = max(int((budget - rss_bytes()) // bytes_per_customer), MIN_TRAINING_CUSTOMERS)
    if fits >= wanted:
        return Allowance(requested or None, None)
    return Allowance(
        fits,
        f"{what}: training sample lowered from {wanted:,} to {fits:,} customers to stay "
        f"within the memory budget of {budget / 1e9:.1f} GB (STOREPULSE_MEMORY_BUDGET; about "
        f"{bytes_per_customer / 1e3:.0f} kB per training customer)",
    )


# --------------------------------------------------------------------------- the allocator


def _glibc():
    """glibc's libc (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas (settings.malloc_arena_max, default 2) unless
    MALLOC_ARENA_MAX already did: glibc otherwise keeps up to 8 per core, each holding
    memory the others cannot reuse. Call at start-up, before threads are started (an
    arena already given to a thread stays). True when the cap was set."""
    arenas = settings.malloc_arena_max()
    libc = _glibc()
    if arenas is None or libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


# Below this resident size a step's leftovers do not matter, and a full garbage
# collection of a process holding Dagster's object graph costs about 0.25 s: tiny and
# small runs would pay seconds per run for nothing (measured: 13.5 s of a 30 s replay).
RELEASE_ABOVE_BYTES = 1 << 30


def release_free_memory(min_rss_bytes: int = RELEASE_ABOVE_BYTES) -> bool:
    """Collect garbage and hand freed heap pages back to the system (glibc malloc_trim),
    so what one step freed is not still counted while the next one runs. polars' own
    allocator (jemalloc) returns freed pages by itself within a second. Skipped (False)
    while the process holds less than `min_rss_bytes`."""
    if rss_bytes() < min_rss_bytes:
        return False
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    return True
