"""The report's "How it failed" section and the sweep report's categories per run."""

import html
import re

import pytest

from harness.analysis.summary import summarize
from harness.config import load_config
from harness.pipeline import execute
from harness.records.schema import TurnRecord
from harness.report.failure_figures import (
    CATEGORY_COLORS,
    CATEGORY_FIGURE,
    SWEEP_CATEGORY_FIGURE,
)
from harness.report.run_page import write_run_report
from harness.report.sweep_page import write_sweep_report
from tasks.generate import generate_task_set
from tasks.parsing import format_answer
from testing.browser import BROWSER, hex_color, pixels_near, screenshot
from testing.run_dirs import written_run

HOSTILE = "<img src=x onerror=alert(1)>"


def write_run(run_dir, *, wrong_as="value_only", label="hand"):
    """Three episodes x four turns: turn 0 right, then each episode fails in one shape.

    e0 answers the value alone at turns 1..3 (value_only), e1 repeats its base (stale) with a
    hostile reply, e2 gives no answer at turn 2 and the true total at turn 3, which is not
    its shown base (turn 1's answer) plus the value: recovered.
    """
    values = generate_task_set(samples=3, turns=4, k=1, seed=5).step_values  # written_run's

    def answers(episode, turn, truth, base):
        value = int(values[episode, turn])
        if episode == 0 and turn > 0:
            answer = value if wrong_as == "value_only" else base + value + 3
            return "ok", answer, format_answer(answer)
        if episode == 1 and turn > 0:
            return "ok", base, format_answer(base) + HOSTILE
        if episode == 2 and turn == 2:
            return "no_answer", None, "I lost count"
        return "ok", truth, format_answer(truth)

    written_run(run_dir, samples=3, turns=4, seed=5, bootstrap=0, answer_for=answers, label=label)


def section(page):
    start = page.index("<h2>How it failed</h2>")
    return page[start : page.index("<h3>First failures</h3>")]


def rows_of(table_html):
    """Cell texts of every body row (the header row has no td)."""
    rows = [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)
    ]
    return [row for row in rows if row]


def test_section_has_the_categories_with_both_shares_a_figure_and_examples(tmp_path):
    write_run(tmp_path)
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    part = section(page)
    tables = re.findall(r"<table>.*?</table>", part, re.S)
    categories, examples = rows_of(tables[0]), rows_of(tables[1])
    by_name = {row[0]: row for row in categories}
    # 8 wrong turns: value_only 3, stale 3, no_answer 1, recovered 1; 4 correct turns.
    assert set(by_name) == {"correct", "recovered", "value_only", "stale", "no_answer"}
    assert by_name["correct"][3:] == ["4", "—", "—", "—"]
    assert by_name["value_only"][3:5] == ["3", f"{3 / 8:.1%}"]
    assert by_name["stale"][3:5] == ["3", f"{3 / 8:.1%}"]
    assert by_name["recovered"][3:5] == ["1", f"{1 / 8:.1%}"]
    assert by_name["no_answer"][3:] == ["1", f"{1 / 8:.1%}", "—", "—"]
    assert by_name["value_only"][5].endswith("%")  # a chance share beside the share
    assert "well above its chance share" in part
    # One example per category present (never "correct"), the earliest of each.
    assert [(row[0], row[1], row[2]) for row in examples] == [
        ("recovered", "2", "4"),
        ("stale", "1", "2"),
        ("value_only", "0", "2"),
        ("no_answer", "2", "3"),
    ]
    assert HOSTILE not in page and html.escape(HOSTILE) in part
    assert (tmp_path / CATEGORY_FIGURE).exists()
    assert part.count('<img alt="error categories by turn" src="data:image/png;base64,') == 1


def test_a_run_without_wrong_turns_has_no_category_figure(tmp_path):
    write_run(tmp_path)
    (tmp_path / "summary.json").unlink()
    # Rewrite every answer to the truth: the figure of the earlier report must go.
    lines = (tmp_path / "turns.jsonl").read_text().splitlines()
    records = [TurnRecord.model_validate_json(line) for line in lines]
    fixed = [
        r.model_copy(
            update={"status": "ok", "answer": r.truth, "reply": "", "base": r.truth - r.delta}
        )
        for r in records
    ]
    (tmp_path / "turns.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in fixed))
    summarize(tmp_path).write(tmp_path)
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "nothing to classify" in section(page)
    assert not (tmp_path / CATEGORY_FIGURE).exists()


def test_sweep_report_shows_categories_per_run(tmp_path):
    write_run(tmp_path / "a", wrong_as="value_only", label="lookup")
    write_run(tmp_path / "b", wrong_as="arithmetic", label="slip")
    paths = write_sweep_report(tmp_path)
    figure = tmp_path / "report" / SWEEP_CATEGORY_FIGURE
    assert figure in paths
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert f'alt="{figure.stem}"' in page


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
async def test_mixed_error_profile_report_draws_its_categories_in_chromium(tmp_path):
    """A simulated run with a mixed error profile: the browser draws the category figure.

    value_only red and stale grey are used by nothing else on the page, so their pixels can
    only come from the embedded figure and the table's swatches.
    """
    config = load_config(
        {
            "model": {
                "provider": "simulated",
                "p": 0.85,
                "error_mix": {"value_only": 0.6, "stale": 0.4},
            },
            "task": {"samples": 20, "turns": 12},
            "run": {"progress": False},
            "metrics": {"bootstrap": 0},
        }
    )
    run_dir = tmp_path / "run"
    await execute(config, run_dir)
    page = write_run_report(run_dir)
    image = screenshot(page, tmp_path, width=1280, height=4000)
    assert pixels_near(image, hex_color(CATEGORY_COLORS["value_only"]), 0.03) > 3000
    assert pixels_near(image, hex_color(CATEGORY_COLORS["stale"]), 0.03) > 1000
