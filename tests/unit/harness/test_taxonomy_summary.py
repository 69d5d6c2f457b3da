"""error_taxonomy and flexible in summary.json, from a run written by hand."""

import json

from harness.analysis.run_summary import SUMMARY_FILE
from harness.analysis.summary import summarize
from harness.commands import summarize_main as main
from harness.files import read_json
from harness.report.text import format_table
from tasks.generate import generate_task_set
from tasks.parsing import format_answer
from testing.run_dirs import written_run

SEED = 5


def write_run(run_dir):
    """Two episodes x three turns; every turn's category is chosen by hand.

    e0: correct, value_only, no_answer ("I think 99999": flexible finds a wrong integer)
    e1: stale (answers 0), no_answer ("the total is T": flexible rescues it), provider_error
    """
    task_set = generate_task_set(samples=2, turns=3, k=1, seed=SEED)  # written_run's
    truth, values = task_set.turn_truth, task_set.step_values
    assert truth[0, 0] != 0 and truth[1, 0] != 0  # else "value_only" and "stale" would differ
    value = int(values[0, 1])
    plan = {
        (0, 0): ("ok", int(truth[0, 0]), format_answer(int(truth[0, 0]))),
        (0, 1): ("ok", value, format_answer(value)),
        (0, 2): ("no_answer", None, "I think 99999"),
        (1, 0): ("ok", 0, format_answer(0)),
        (1, 1): ("no_answer", None, f"the total is {int(truth[1, 1])}"),
        (1, 2): ("provider_error", None, ""),
    }
    written_run(
        run_dir,
        samples=2,
        turns=3,
        seed=SEED,
        bootstrap=0,
        label="hand",
        answer_for=lambda episode, turn, truth, base: plan[(episode, turn)],
    )


def test_taxonomy_counts_shares_and_per_turn(tmp_path):
    write_run(tmp_path)
    taxonomy = summarize(tmp_path).error_taxonomy
    assert taxonomy.unavailable is None
    assert taxonomy.wrong_turns == 4  # provider errors are not scored; the correct turn is no error
    counts = {name: entry.count for name, entry in taxonomy.overall.items() if entry.count}
    assert counts == {"correct": 1, "stale": 1, "value_only": 1, "no_answer": 2}
    shares = {name: entry.share for name, entry in taxonomy.overall.items() if entry.count}
    assert shares == {"correct": None, "stale": 0.25, "value_only": 0.25, "no_answer": 0.5}
    assert taxonomy.overall["no_answer"].chance_share is None  # a shuffle cannot change it
    assert taxonomy.chance.answers == 2
    assert taxonomy.wrong_per_turn == [1, 2, 1]
    assert taxonomy.per_turn == {
        "stale": [1.0, 0.0, 0.0],
        "value_only": [0.0, 0.5, 0.0],
        "no_answer": [0.0, 0.5, 1.0],
    }


def test_flexible_view_rescues_only_the_tagless_reply_with_the_right_total(tmp_path):
    write_run(tmp_path)
    summary = summarize(tmp_path)
    assert summary.index_accuracy == [0.5, 0.0, 0.0]  # strict scoring is unchanged
    assert summary.flexible.model_dump() == {
        "index_accuracy": [0.5, 0.5, 0.0],
        "turns_rescued": 1,
        "turns_extracted": 2,
    }


def test_flexible_view_reads_a_file_not_in_the_writers_format(tmp_path):
    write_run(tmp_path)
    path = tmp_path / "turns.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(line, indent=None) + "\n" for line in lines))  # ": "
    assert '"status": "no_answer"' in path.read_text()
    assert summarize(tmp_path).flexible.turns_rescued == 1


def test_printed_table_names_the_top_two_categories(tmp_path):
    write_run(tmp_path)
    summary = summarize(tmp_path)
    table = format_table(summary, tmp_path, [1, 2, 3])
    line = next(line for line in table.splitlines() if line.startswith("failures"))
    # no_answer is first (2 of 4); stale and value_only tie at 1, stale comes first in the table
    assert line.startswith("failures   no_answer 50%, stale 25% (chance ")
    assert line.endswith("of 4 wrong turns")
    assert "flexible   index acc 0.500, 0.500, 0.000 at turns 1, 2, 3" in table


def test_lhe_summarize_recomputes_both(tmp_path, capsys):
    write_run(tmp_path)
    summary = summarize(tmp_path)
    summary.model_copy(update={"error_taxonomy": None, "flexible": None}).write(tmp_path)
    assert read_json(tmp_path / SUMMARY_FILE)["error_taxonomy"] is None
    main([str(tmp_path)])
    capsys.readouterr()
    rewritten = read_json(tmp_path / SUMMARY_FILE)
    assert rewritten["error_taxonomy"] == summary.error_taxonomy.model_dump(mode="json")
    assert rewritten["flexible"] == summary.flexible.model_dump(mode="json")


def test_no_taxonomy_when_the_task_set_cannot_be_rebuilt(tmp_path):
    write_run(tmp_path)
    manifest = read_json(tmp_path / "manifest.json")
    manifest["task_set"]["fingerprint"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    taxonomy = summarize(tmp_path).error_taxonomy
    assert taxonomy.unavailable == (
        "the rebuilt task set differs from the run's (fingerprint mismatch)"
    )
    assert taxonomy.overall == {}
