"""CPU seconds of a process tree, read from /proc (Linux).

A process's own time is utime+stime of /proc/<pid>/stat; cutime+cstime is the time of its
children that it has waited for (each with their own waited-for descendants). Summing all four
over every live process of a tree therefore counts every process that ever ran in it once: the
live ones themselves, the exited ones through the parent that reaped them (a replaced image
worker, a PostgreSQL backend of a closed connection). Not counted: a zombie not yet reaped, and an
orphan re-parented out of the tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    own_ticks: int  # utime + stime
    children_ticks: int  # cutime + cstime (reaped children)


def parse_stat(text: str) -> Stat:
    """One /proc/<pid>/stat line. The command name (field 2) is in parentheses and may itself hold
    spaces and parentheses: the fields after it start after the last ')'."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    return Stat(
        pid=pid,
        ppid=int(rest[1]),
        own_ticks=int(rest[11]) + int(rest[12]),
        children_ticks=int(rest[13]) + int(rest[14]),
    )


def read_stats(proc: Path = Path("/proc")) -> dict[int, Stat]:
    """Every process's stat now (processes that end while being read are skipped)."""
    stats = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
    return stats


def children_of(stats: dict[int, Stat]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    return children


def tree_ticks(root: int, stats: dict[int, Stat], children: dict[int, list[int]] | None = None) -> int | None:
    """Clock ticks of root and all its descendants, live and reaped; None when root is gone."""
    if root not in stats:
        return None
    children = children_of(stats) if children is None else children
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        s = stats[pid]
        total += s.own_ticks + s.children_ticks
        todo.extend(children.get(pid, ()))
    return total


def cpu_seconds(roots: dict[str, int], stats: dict[int, Stat] | None = None) -> dict[str, float]:
    """name -> CPU seconds (user+system) of the process tree of each root pid still running."""
    stats = read_stats() if stats is None else stats
    children = children_of(stats)
    out = {}
    for name, pid in roots.items():
        ticks = tree_ticks(pid, stats, children)
        if ticks is not None:
            out[name] = ticks / TICKS
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per name present in both."""
    return {name: after[name] - before[name] for name in after if name in before}
