import html

from harness.records.schema import TurnRecord
from harness.report.run_page import FailureExample, failure_table

WRITTEN = "0 + apple (8) = 8\n<answer>8</answer>"


def test_the_failure_table_shows_the_text_a_written_history_showed():
    records = (
        TurnRecord(
            episode=0,
            turn=0,
            keys=["apple"],
            delta=5,
            truth=5,
            base=0,
            status="filled",
            filled=True,
            shown=8,
            shown_text=WRITTEN,
            injected=True,
        ),
        TurnRecord(
            episode=0, turn=1, keys=["house"], delta=2, truth=7, base=8, status="ok", answer=3
        ),
    )
    page = failure_table(FailureExample(episode=0, turn=1, records=records))
    assert "history shows" in page
    assert f'<td class="text">{html.escape(WRITTEN)}</td>' in page
