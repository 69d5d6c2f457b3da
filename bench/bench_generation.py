"""Task generation speed: 100 episodes x 50,000 keys (target: under 2 s).

Side by side in one run: the harness's vectorised generator and a per-key Python loop in the
style of the paper's generator (``random.choice`` per key, running sum in Python).

    python bench/bench_generation.py
"""

from __future__ import annotations

import random
import time

from tasks.generate import generate_task_set

EPISODES, STEPS = 100, 50_000


def per_key_loop(words: list[str], values: dict[str, int], seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    episodes = []
    for _ in range(EPISODES):
        total, sums = 0, []
        for _ in range(STEPS):
            total += values[rng.choice(words)]
            sums.append(total)
        episodes.append(sums)
    return episodes


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    def ours():
        task_set = generate_task_set(samples=EPISODES, turns=STEPS, k=1, seed=42)
        return task_set.turn_truth  # include the ground truth, not just the keys

    ours_s = best_of(3, ours)
    ts = generate_task_set(samples=1, turns=1, k=1, seed=42)
    loop_s = best_of(1, lambda: per_key_loop(list(ts.words), ts.dictionary, 42))
    print(f"episodes x keys            {EPISODES} x {STEPS:,}")
    verdict = "met" if ours_s < 2 else "MISSED"
    print(f"harness generator          {ours_s:.3f} s   (target < 2 s: {verdict})")
    print(f"per-key Python loop        {loop_s:.3f} s")
    print(f"speed-up                   {loop_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
