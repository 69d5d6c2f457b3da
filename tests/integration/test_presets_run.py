"""Every experiment preset of the README composes and runs its own sweep (tiny, simulated).

Each preset declares its sweep in ``conf/experiment/<name>.yaml``; the number of jobs must be
the product of the lengths of its comma lists (read from the file here, not from the code),
with any list the command overrides replaced by the override's.
"""

import json
import math
from pathlib import Path

import pytest
import yaml

from testing.lhe_process import run_lhe

pytestmark = pytest.mark.slow

CONF = Path(__file__).resolve().parents[2] / "conf" / "experiment"
TINY = ["model=simulated", "task.samples=3", "metrics.bootstrap=0", "run.progress=false"]
PRESETS = {
    "horizon": ["task.turns=4"],
    "majority_vote": ["task.turns=3"],
    "context_window": ["task.turns=4"],
    "turn_complexity": ["experiment.total_steps=12", "task.k=1,3,12"],
    "modes": ["task.turns=3"],
    "self_conditioning_curves": ["task.turns=4"],
}


def expected_jobs(preset: str, overrides: list[str]) -> int:
    declared = yaml.safe_load((CONF / f"{preset}.yaml").read_text())
    params = dict(declared.get("hydra", {}).get("sweeper", {}).get("params", {}) or {})
    for override in overrides:
        name, value = override.split("=", 1)
        if "," in value:
            params[name] = value
    return math.prod(len(str(values).split(",")) for values in params.values())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_composes_and_runs_its_sweep(preset, tmp_path):
    overrides = PRESETS[preset]
    code, stderr = run_lhe(
        ["-m", f"experiment={preset}", *TINY, *overrides, f"hydra.sweep.dir={tmp_path}"],
        tmp_path.with_name(f"{tmp_path.name}.stderr"),
    )
    assert code == 0, stderr[-2000:]
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert len(runs) == expected_jobs(preset, overrides) >= 1
    assert {run["status"] for run in runs} == {"complete"}
    assert all(run["turns_scored"] > 0 for run in runs)
    assert (tmp_path / "report" / "sweep.csv").is_file()
    if preset == "turn_complexity":  # 12 steps cut into turns of K
        assert sorted((run["k"], len(run["task_accuracy"])) for run in runs) == [
            (1, 12),
            (3, 4),
            (12, 1),
        ]
