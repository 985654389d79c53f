"""Time the synthetic DVPS generator on the size the foundation issue sets a budget for.

Target (issue #2): 10 sequences x 6 frames at 256x512 in under 30 s on the 2-core CI machine.
The reference is that 30 s budget, not a second measurement: the generator has no slower twin
to compare with. Both formats are timed; the slower one gives the ratio.

    .venv/bin/python benchmarks/synthetic_generation.py
"""

from __future__ import annotations

import tempfile
import time

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

BUDGET_S = 30.0
SEQUENCES, FRAMES, HEIGHT, WIDTH = 10, 6, 256, 512


def main() -> None:
    worst = 0.0
    for fmt in ("cityscapes_dvps", "semkitti_dvps"):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            generate_synthetic_dvps(out, fmt, "train", SEQUENCES, FRAMES, HEIGHT, WIDTH, seed=0)
            elapsed = time.perf_counter() - start
        print(f"{fmt}: {SEQUENCES}x{FRAMES} frames at {HEIGHT}x{WIDTH} in {elapsed:.2f} s")
        worst = max(worst, elapsed)
    print(f"RESULT synthetic_generation ratio={worst / BUDGET_S:.3f} goal<=1.0")


if __name__ == "__main__":
    main()
