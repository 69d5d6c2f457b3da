"""Hydra callback: when a multirun ends, build the sweep report in the sweep directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """Aggregates every job of the sweep into one table, figures and an HTML page."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the report; a failure here must not hide that the jobs themselves finished."""
        from harness.report.sweep_page import write_sweep_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            paths = write_sweep_report(sweep_dir)
        except Exception as exc:
            log.error("sweep report for %s failed: %s", sweep_dir, exc)
            return
        for path in paths:
            log.info("sweep report: %s", path)
