"""Skip a test whose optional part is missing, except under CI, which installs every part.

A skip on a developer's machine says what to install; the same skip in CI would hide that
the install step broke, so there (``CI=true``, as ``.ci/run`` sets) it is a failure.
"""

from __future__ import annotations

import os

import pytest


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``, or fail it under CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)
