"""Format drift through the whole pipeline: summary, printed table, report, sweep report."""

import re

import pandas as pd
import pytest

from harness.analysis.format_drift import DRIFT_WARNING, FormatDrift
from harness.analysis.run_summary import read_summary
from harness.config import load_config
from harness.pipeline import execute
from harness.records.schema import read_records
from harness.report.sweep_page import write_sweep_report
from harness.report.text import format_table
from providers.base import ChatResult
from providers.registry import register_provider
from tasks.parsing import parse_reply
from tasks.prompts import read_dictionary
from testing.scripted import ScriptedProvider

WORK_LINE = re.compile(r"^-?\d+ \+ [a-z]+ \(-?\d+\) = -?\d+$", re.MULTILINE)


def right_reply(messages, *, show_working):
    """A right update of the last shown answer, with or without the taught working."""
    dictionary = read_dictionary(messages[0].content)
    shown = [parse_reply(m.content).answer for m in messages if m.role == "assistant"]
    total = shown[-1] if shown else 0
    lines = []
    for word in messages[-1].content.split(", "):
        lines.append(f"{total} + {word} ({dictionary[word]}) = {total + dictionary[word]}")
        total += dictionary[word]
    tag = f"<answer>{total}</answer>"
    return "\n".join([*lines, tag]) if show_working else tag


def imitates_its_history(messages, sampling):
    """Shows its working only when the last assistant turn did (or there is none)."""
    assistants = [m.content for m in messages if m.role == "assistant"]
    show = not assistants or WORK_LINE.search(assistants[-1]) is not None
    return ChatResult(content=right_reply(messages, show_working=show))


def stops_working_after_an_error(messages, sampling):
    """Drops its working once its history shows any wrong total."""
    dictionary = read_dictionary(messages[0].content)
    truth, wrong = 0, False
    for user, assistant in zip(messages[1::2], messages[2::2], strict=False):
        truth += sum(dictionary[w] for w in user.content.split(", "))
        wrong |= parse_reply(assistant.content).answer != truth
    return ChatResult(content=right_reply(messages, show_working=not wrong))


def never_working(messages, sampling):
    return ChatResult(content=right_reply(messages, show_working=False))


for _name, _script in [
    ("imitates-history-format", imitates_its_history),
    ("stops-working-after-an-error", stops_working_after_an_error),
    ("never-shows-working", never_working),
]:
    register_provider(_name)(lambda config, *, concurrency, s=_script: ScriptedProvider(s))


def config(provider, *, mode="cot", rate=0.0, target_turn=6, source="injected"):
    history = {"source": source, "rate": rate}
    if target_turn:
        history["target_turn"] = target_turn
    return load_config(
        {
            "model": {"provider": provider, "label": provider},
            "task": {"samples": 6, "turns": 6, "k": 2, "mode": mode},
            "history": history,
            "experiment": {"name": "self_conditioning"},
            "run": {"progress": False},
            "metrics": {"bootstrap": 50},
        }
    )


def drift_by_hand(run_dir):
    called = [r for r in read_records(run_dir) if not r.filled]
    return sum(WORK_LINE.search(r.reply) is None for r in called) / len(called)


@pytest.mark.parametrize("source", ["injected", "healed"])
async def test_a_model_that_copies_its_history_keeps_showing_its_working(tmp_path, source):
    """The issue's case: filled CoT turns written as bare tags made such a model drop its
    working at every called turn; written as CoT replies they keep it."""
    rate = 0.5 if source == "injected" else 0.0
    summary = await execute(
        config("imitates-history-format", rate=rate, source=source, target_turn=4), tmp_path
    )
    assert drift_by_hand(tmp_path) == 0.0
    assert summary.format_drift == FormatDrift(replies=6 * 3, without_working=0, share=0.0)
    assert summary.turn_accuracy[3:] == [1.0, 1.0, 1.0]


async def test_drift_is_warned_in_the_table_and_the_report_and_absent_outside_cot(tmp_path, capsys):
    summary = await execute(config("never-shows-working"), tmp_path / "cot")
    assert summary.format_drift.share == 1.0 == drift_by_hand(tmp_path / "cot")
    printed = capsys.readouterr().out
    assert re.search(r"^warning    format drift 100% \(6 of 6 CoT replies", printed, re.M)
    assert DRIFT_WARNING in (tmp_path / "cot" / "report.html").read_text()
    assert read_summary(tmp_path / "cot").format_drift.share == 1.0

    direct = await execute(config("never-shows-working", mode="direct"), tmp_path / "direct")
    assert direct.format_drift is None
    assert "warning" not in format_table(direct, tmp_path / "direct", [1, 6])
    assert DRIFT_WARNING not in (tmp_path / "direct" / "report.html").read_text()


async def test_the_self_conditioning_sweep_report_shows_drift_beside_accuracy_per_rate(tmp_path):
    expected = {}
    for rate in (0.0, 1.0):
        run_dir = tmp_path / f"rate{rate}"
        await execute(config("stops-working-after-an-error", rate=rate), run_dir)
        expected[rate] = drift_by_hand(run_dir)
    assert expected == {0.0: 0.0, 1.0: 1.0}
    write_sweep_report(tmp_path)
    table = pd.read_csv(tmp_path / "report" / "sweep.csv").sort_values("rate")
    assert table["format_drift"].tolist() == [expected[0.0], expected[1.0]]
    page = (tmp_path / "report" / "index.html").read_text()
    section = page.split("Self-conditioning: turn-T accuracy and format drift per rate")[1]
    assert DRIFT_WARNING in section.split("</h2>")[0]
    header = re.search(r"<tr[^>]*>(.*?)</tr>", section, re.S).group(1)
    cells = re.findall(r"<th[^>]*>(.*?)</th>", header)
    assert cells.index("format_drift") == cells.index("target_turn_accuracy") + 1
    assert "rate" in cells
