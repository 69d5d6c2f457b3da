"""A report as a browser draws it: a headless Chromium screenshot, and pixels to count in it.

Chromium is not a project dependency (``.ci/run`` installs the system's package); tests that
need it skip where :data:`BROWSER` is None.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from matplotlib.image import imread

BROWSER = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
"""The Chromium binary on this machine, or None."""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags that keep a sandboxed, offline Chromium from reaching out or waiting on services."""


def screenshot(page: Path, work_dir: Path, *, width: int, height: int) -> np.ndarray:
    """The RGBA pixels of ``page`` drawn in a ``width`` x ``height`` window.

    Raises ``AssertionError`` with the end of Chromium's stderr when it fails.
    """
    shot = work_dir / "screenshot.png"
    result = subprocess.run(
        [
            str(BROWSER),
            *FLAGS,
            f"--user-data-dir={work_dir / 'profile'}",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return imread(shot)


def pixels_near(image: np.ndarray, color: np.ndarray, tolerance: float) -> int:
    """Pixels whose RGB is within ``tolerance`` of ``color`` (0-1 floats) in every channel."""
    return int((np.abs(image[..., :3] - color) < tolerance).all(axis=-1).sum())


def hex_color(text: str) -> np.ndarray:
    """``#rrggbb`` as 0-1 floats."""
    return np.array([int(text[i : i + 2], 16) for i in (1, 3, 5)]) / 255
