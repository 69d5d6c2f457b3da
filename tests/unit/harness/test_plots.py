import math
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from harness.analysis.run_summary import read_summary
from harness.config import load_config
from harness.pipeline import execute
from harness.report.run_figures import (
    TASK_FIGURE,
    TURN_FIGURE,
    CurveSeries,
    HorizonMark,
    Prop1Curve,
    plot_task_accuracy,
    plot_turn_accuracy,
    task_accuracy_figure,
    turn_accuracy_figure,
    write_run_figures,
)
from harness.report.survival_section import HAZARD_FIGURE
from tasks.parsing import format_answer
from testing.run_dirs import written_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # a drawn figure, not an empty canvas
    with Image.open(path) as image:
        image.verify()


async def simulated_run(run_dir, *, p, samples=16, turns=10, k=2):
    config = load_config(
        {
            "model": {"provider": "simulated", "p": p},
            "task": {"samples": samples, "turns": turns, "k": k},
            "run": {"progress": False},
            "metrics": {"bootstrap": 100},
        }
    )
    await execute(config, run_dir)
    return read_summary(run_dir)


async def test_normal_run_writes_both_figures_as_real_pngs(tmp_path):
    summary = await simulated_run(tmp_path, p=0.9)
    assert not summary.horizon.censored
    paths = write_run_figures(tmp_path, read_summary(tmp_path))
    assert sorted(p.name for p in paths) == sorted([TURN_FIGURE, TASK_FIGURE, HAZARD_FIGURE])
    for path in paths:
        assert path.parent == tmp_path
        assert_real_png(path)
    # The figures draw the summary's numbers: each curve at its lengths, H_s where it is.
    k = summary.k
    turns = np.arange(1, len(summary.task_accuracy) + 1)
    task_ax = task_accuracy_figure(summary).axes[0]
    drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in task_ax.get_lines()]
    assert (list(turns * k), summary.task_accuracy) in drawn
    assert ([summary.horizon.steps] * 2, [0, 1]) in drawn
    turn_ax = turn_accuracy_figure(summary).axes[0]
    drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in turn_ax.get_lines()]
    assert (list(turns), summary.turn_accuracy) in drawn


async def test_censored_run_is_drawn_and_labelled_as_a_lower_bound(tmp_path):
    summary = await simulated_run(tmp_path, p=1.0)
    assert summary.horizon.censored  # task accuracy never fell below s
    for path in write_run_figures(tmp_path, read_summary(tmp_path)):
        assert_real_png(path)
    legend = [t.get_text() for t in task_accuracy_figure(summary).axes[0].get_legend().texts]
    last_length = summary.turns * summary.k
    assert any(f">= {last_length} steps" in text for text in legend)
    assert any("no finite horizon" in text for text in legend)  # p_hat = 1


def test_provider_errors_and_unscored_turns_do_not_break_the_figures(tmp_path):
    turns = 6

    def answers(episode, turn, truth, base):
        if turn == turns - 1 or (episode == 0 and turn == 2):
            return "provider_error", None, ""
        if episode == 1 and turn == 1:
            return "bad_format", None, "I think it is about forty"
        return "ok", truth, format_answer(truth)

    summary = written_run(tmp_path, seed=3, samples=5, turns=turns, k=1, answer_for=answers)
    assert summary.turn_accuracy[-1] is None  # nothing scored at the last turn
    assert summary.index_accuracy[-1] is None
    assert summary.ci95.turn_accuracy[-1] == [None, None]
    paths = write_run_figures(tmp_path, read_summary(tmp_path))
    for path in paths:
        assert_real_png(path)


def test_figures_name_model_and_mode_and_say_simulated_only_when_simulated(tmp_path):
    def perfect(episode, turn, truth, base):
        return "ok", truth, format_answer(truth)

    summary = written_run(tmp_path, seed=3, samples=3, turns=4, k=2, answer_for=perfect)
    for build in (turn_accuracy_figure, task_accuracy_figure):
        ax = build(summary).axes[0]
        assert "SIMULATED" not in ax.get_title()
        legend_title = ax.get_legend().get_title().get_text()
        assert "tiny-model" in legend_title and "direct" in legend_title
        assert (
            "SIMULATED" in build(summary.model_copy(update={"simulated": True})).axes[0].get_title()
        )


def test_curve_series_turns_missing_values_into_gaps_and_rejects_mismatched_lengths():
    curve = CurveSeries(label="a", x=[1, 2, 3], y=[0.5, None, 0.25], lo=[None, None, 0.1])
    assert math.isnan(curve.y[1]) and math.isnan(curve.lo[0])
    assert curve.y[2] == 0.25
    with pytest.raises(ValueError, match="y has 2 points, x has 3"):
        CurveSeries(label="b", x=[1, 2, 3], y=[0.5, 0.4])


def test_several_runs_overlay_on_one_axes_with_units_and_unit_interval():
    ax = Figure().add_subplot()
    x = np.arange(1, 11)
    curves = [
        CurveSeries(label=f"run {name}", x=x * 2, y=p ** (x * 2), lo=p ** (x * 2) - 0.05)
        for name, p in (("A", 0.9), ("B", 0.97))
    ]
    plot_task_accuracy(
        ax,
        curves,
        s=0.5,
        horizons=[HorizonMark(label="run A", steps=6.6, ci95=(5.0, 8.0))],
        predictions=[
            Prop1Curve(label="run A", p_hat=0.9, predicted_steps=6.6),
            Prop1Curve(label="run B", p_hat=0.999, predicted_steps=692.8),
        ],
    )
    legend = [t.get_text() for t in ax.get_legend().texts]
    assert any(t == "run A" for t in legend) and any(t == "run B" for t in legend)
    assert any(t.startswith("run A: observed") and "[5.0, 8.0]" in t for t in legend)
    assert any(t.startswith("run B: Prop. 1") and "beyond this plot" in t for t in legend)
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlim()[0] == 0.0 and 20.0 <= ax.get_xlim()[1] < 21.0
    assert "steps" in ax.get_xlabel() and "accuracy" in ax.get_ylabel()

    turn_ax = Figure().add_subplot()
    plot_turn_accuracy(turn_ax, curves[:1])
    assert turn_ax.get_xlabel() == "turn" and "accuracy" in turn_ax.get_ylabel()
    assert turn_ax.get_ylim() == (0.0, 1.0)


def test_a_dollar_in_a_model_label_is_drawn_literally(tmp_path):
    def perfect(episode, turn, truth, base):
        return "ok", truth, format_answer(truth)

    summary = written_run(
        tmp_path, seed=3, samples=2, turns=3, k=1, answer_for=perfect, label="m$1"
    )
    summary = summary.model_copy(
        update={"model": "cost$5 and $6"}
    )  # an unescaped pair would be math mode
    for build in (task_accuracy_figure, turn_accuracy_figure):
        figure = build(summary)
        figure.savefig(tmp_path / "dollar.png")
        assert_real_png(tmp_path / "dollar.png")
        texts = [t for t in figure.findobj(Text) if "cost" in t.get_text()]
        assert texts, "the model label is drawn somewhere"
        for text in texts:
            # what matplotlib will draw, and whether it would parse it as math
            drawn, is_math = text._preprocess_math(text.get_text())
            assert is_math is False and "cost$5 and $6" in drawn


def test_importing_plots_leaves_pyplot_and_the_backend_alone():
    # get_backend() itself would import pyplot, so compare the raw rcParams entry instead
    code = (
        "import matplotlib, sys; raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
        "before = raw(); import harness.report.run_figures; "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert raw() == before"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
