"""Summarise py-spy's collapsed stacks (`--format raw`): where the server's time goes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (path/to/file.py)"
_LINE = re.compile(r":\d+\)$")
_SITE = re.compile(r"^.*?/(site-packages|lib/python3\.\d+|src)/")


def _frame(raw: str) -> str:
    """A frame without its line number, and with the path cut to the package."""
    frame = _LINE.sub(")", raw.strip())
    name, _, where = frame.partition(" (")
    return f"{name} ({_SITE.sub('', where)}" if where else name


def summarise(path: Path, top: int = 20) -> dict[str, object]:
    """Self and inclusive shares of the samples, per function, and the project's own share."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        # The thread name py-spy puts first is not a function.
        frames = [f for f in frames if "(" in f] or frames
        total += samples
        self_time[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples

    def share(counter: Counter[str], keep: str = "") -> list[tuple[str, float]]:
        rows = [(k, v) for k, v in counter.most_common() if keep in k]
        return [(name, round(100 * n / total, 1)) for name, n in rows[:top]] if total else []

    return {
        "samples": total,
        "self_percent": share(self_time),
        "inclusive_percent": share(inclusive),
        "bookchat_inclusive_percent": share(inclusive, "bookchat/"),
    }


def render(summary: dict[str, object]) -> str:
    lines = [f"py-spy samples: {summary['samples']}"]
    for key, title in (
        ("self_percent", "self time (where the CPU is)"),
        ("inclusive_percent", "inclusive time"),
        ("bookchat_inclusive_percent", "inclusive time, bookchat's own functions"),
    ):
        lines.append(f"\n{title}:")
        rows = summary[key]
        assert isinstance(rows, list)
        lines += [f"  {percent:5.1f}%  {name}" for name, percent in rows]
    return "\n".join(lines)
