import html
import re

import numpy as np
import pytest

from harness.analysis.run_summary import read_summary
from harness.analysis.summary import summarize
from harness.commands import report_main as main
from harness.config import load_config
from harness.pipeline import execute
from harness.records.schema import TurnRecord
from harness.report.run_page import MAX_TEXT_CHARS, first_failures, write_run_report
from tasks.parsing import format_answer
from testing.browser import BROWSER, pixels_near, screenshot
from testing.run_dirs import written_run

HOSTILE = "<script>alert(1)</script>"


async def simulated_run(run_dir, *, p, samples=12, turns=8, k=1):
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


def record(episode, turn, *, truth=10, answer=10, status="ok", reply=None, base=0, delta=10):
    return TurnRecord(
        episode=episode,
        turn=turn,
        keys=["apple"],
        delta=delta,
        truth=truth,
        base=base,
        status=status,
        answer=answer,
        reply=format_answer(answer) if reply is None else reply,
    )


def assert_self_contained(page, figures=4):
    """Every figure inlined; ``figures``: turn accuracy, task accuracy, hazard, error
    categories."""
    assert 'src="http' not in page and "src='http" not in page
    assert "<link" not in page
    assert "<script" not in page
    assert "url(" not in page  # no CSS fetches either
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == figures
    assert all(src.startswith("data:image/png;base64,") for src in images)


async def test_simulated_run_report_has_banner_headline_and_embedded_figures(tmp_path):
    summary = await simulated_run(tmp_path, p=0.8)
    path = write_run_report(tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert summary.model in page
    assert 'class="banner simulated"' in page
    assert f"{summary.horizon.steps:.1f} steps" in page
    assert f"{summary.prop1.p_hat:.4f}" in page
    assert f"K={summary.k}" in page and summary.mode in page
    assert "How it failed" in page and 'class="failed"' in page
    assert '"provider": "simulated"' in page.replace("&quot;", '"')  # the resolved config
    assert_self_contained(page)
    assert (tmp_path / "turn_accuracy.png").exists() and (tmp_path / "task_accuracy.png").exists()


async def test_censored_horizon_reads_as_a_lower_bound(tmp_path):
    summary = await simulated_run(tmp_path, p=1.0, turns=6)
    assert summary.horizon.censored
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "&gt;= 6 steps" in page
    assert "No scored turn was wrong." in page


def test_hostile_reply_appears_only_escaped_and_no_simulated_banner(tmp_path):
    def answers(episode, turn, truth, base):
        if episode == 1 and turn == 2:
            return "ok", truth + 3, f"{format_answer(truth + 3)}{HOSTILE}"
        return "ok", truth, format_answer(truth)

    written_run(tmp_path, samples=3, turns=4, answer_for=answers, label="tiny<b>model</b>")
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert HOSTILE not in page
    assert html.escape(HOSTILE) in page
    assert "<b>model</b>" not in page and "tiny&lt;b&gt;model&lt;/b&gt;" in page
    assert "SIMULATED" not in page
    assert_self_contained(page)


def test_format_errors_are_shown_as_failures_and_counted(tmp_path):
    def answers(episode, turn, truth, base):
        if episode == 0 and turn == 3:
            return "no_answer", None, "Let me think step by step..."
        return "ok", truth, format_answer(truth)

    summary = written_run(tmp_path, samples=2, turns=5, answer_for=answers)
    assert summary.format_errors_by_kind["no_answer"] == 1
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "Episode 0: first wrong at turn 4" in page
    assert "Let me think step by step..." in page
    assert re.search(r"format error: no_answer</td>\s*<td>1</td>", page)


def test_first_failures_takes_the_first_wrong_turn_with_two_before_it():
    records = [
        record(0, 0),
        record(0, 1),
        record(0, 2),
        record(0, 3, answer=11),  # first failure of episode 0
        record(0, 4, answer=12),
        record(1, 0, status="provider_error", answer=None, reply=""),  # not a failure
        record(2, 0, status="bad_format", answer=None, reply="ten"),
    ]
    examples, failed = first_failures(records)
    assert failed == 2
    assert [(e.episode, e.turn) for e in examples] == [(0, 3), (2, 0)]
    assert [r.turn for r in examples[0].records] == [1, 2, 3]
    assert [r.turn for r in examples[1].records] == [0]


def test_first_failures_shows_every_kind_of_failure_before_filling_up():
    records = [record(e, 0, answer=11) for e in range(6)]
    records.append(record(6, 0, status="context_exceeded", answer=None, reply=""))
    examples, failed = first_failures(records, limit=3)
    assert failed == 7
    assert [e.episode for e in examples] == [0, 1, 6]


def test_a_resumed_turn_supersedes_its_failed_attempt():
    records = [record(0, 0, answer=99), record(0, 0)]  # same turn, later record wins
    examples, failed = first_failures(records)
    assert (examples, failed) == ([], 0)


def test_long_replies_are_clipped_and_say_how_much_is_missing(tmp_path):
    long_reply = "x" * (MAX_TEXT_CHARS + 500)

    def answers(episode, turn, truth, base):
        return "bad_format", None, long_reply

    written_run(tmp_path, samples=1, turns=2, answer_for=answers)
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert long_reply not in page
    assert "(500 more characters)" in page


def test_cli_writes_figures_and_report_and_prints_the_path(tmp_path, capsys):
    written_run(
        tmp_path, samples=2, turns=3, answer_for=lambda e, t, x, base: ("ok", x, format_answer(x))
    )
    main([str(tmp_path)])
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").exists() and (tmp_path / "task_accuracy.png").exists()


def test_cli_without_a_summary_fails_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path)])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "summary.json" in error


def test_a_summary_without_bootstrap_intervals_still_reports(tmp_path):
    written_run(
        tmp_path, samples=3, turns=4, answer_for=lambda e, t, x, base: ("ok", x + (t == 2), "...")
    )
    summary = summarize(tmp_path, resamples=0)
    assert summary.ci95.task_accuracy is None and summary.horizon.ci95 is None
    summary.write(tmp_path)
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert f"{summary.horizon.steps:.1f} steps = " in page
    assert "95% CI [" not in page


# The report as a browser draws it (skips where Chromium is not installed).
MATPLOTLIB_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255  # "C0": the first curve of each figure
BANNER_RED = np.array([0xC0, 0x39, 0x2B]) / 255  # the SIMULATED banner's border


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
async def test_report_renders_with_its_figures_in_headless_chromium(tmp_path):
    run_dir = tmp_path / "run"
    await simulated_run(run_dir, p=0.85, samples=20, turns=10)
    page = write_run_report(run_dir)
    image = screenshot(page, tmp_path, width=1280, height=2400)
    assert image.shape[:2] == (2400, 1280)
    # The embedded figures were decoded and drawn (their curves are matplotlib blue, which
    # nothing else on the page uses), and the banner says SIMULATED.
    assert pixels_near(image, MATPLOTLIB_BLUE, 0.06) > 2000
    assert pixels_near(image, BANNER_RED, 0.06) > 500
