"""What the reference scripts share without importing any framework: the FLOP count of the
bench's Glow and the `bench --scaling` series ids (as apps/src/bench/scaling.rs)."""
import re

SERIES = ["glow-32px-b8", "glow-32px-b16", "glow-32px-b32", "glow-32px-b64", "glow-16px-b16", "glow-64px-b16"]


def series_point(case):
    """`(side, batch)` of a series id, else None."""
    m = re.fullmatch(r"glow-(\d+)px-b(\d+)", case)
    return (int(m.group(1)), int(m.group(2))) if m else None


def series_steps(side, batch):
    """As the bench: 30 steps at 32x32 and batch 16, fewer as the work per step grows."""
    return min(120, max(3, round(30 / (side * side * batch / (32 * 32 * 16)))))


def glow_flops(c, hw, levels, steps, hidden):
    """FLOPs of one Glow log-density evaluation per image (convolutions and 1x1 mixing)."""
    h = w = hw
    total = 0
    for level in range(levels):
        c, h, w = c * 4, h // 2, w // 2
        half = c // 2
        coupling = 9 * half * hidden + hidden * hidden + 9 * hidden * 2 * (c - half)
        total += steps * h * w * (coupling + c * c)
        if level + 1 < levels:
            c //= 2
    return 2.0 * total
