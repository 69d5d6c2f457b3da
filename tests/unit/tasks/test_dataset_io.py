import json
import re
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from tasks.dataset_cli import main
from tasks.dataset_io import export_task_set, import_task_set
from tasks.generate import generate_task_set
from tasks.source import load_task_set
from tasks.taskset import TaskSet


@pytest.fixture(autouse=True)
def _isolated_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_dataset converts local files into its cache; keep that inside the test's tmp_path.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def _episode_rows(ts: TaskSet) -> list[dict]:
    """Rows in the paper's layout, computed in plain Python from the dictionary."""
    rows = []
    for episode in range(ts.samples):
        keys = [ts.words[i] for i in ts.keys[episode]]
        values = [ts.dictionary[w] for w in keys]
        output, total = [], 0
        for v in values:
            total += v
            output.append(total)
        rows.append({"input": keys, "values": values, "output": output})
    return rows


def _paper_document(ts: TaskSet, rows: list[dict] | None = None) -> dict:
    return {
        "experiment_type": "dict_sum",
        "config": {"dict_size": len(ts.words), "horizon_length": ts.steps},
        "dictionary": ts.dictionary,
        "ground_truth_data": _episode_rows(ts) if rows is None else rows,
    }


def _write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _generated(**overrides: int) -> TaskSet:
    params = {"samples": 4, "turns": 12, "k": 1, "dict_size": 30, "seed": 5} | overrides
    return generate_task_set(**params)


# ----------------------------------------------------------------------------- round trip


def test_export_then_import_gives_the_identical_task_set(tmp_path: Path) -> None:
    ts = generate_task_set(samples=5, turns=6, k=3, dict_size=40, seed=9)
    out = export_task_set(ts, tmp_path / "exported")

    back = import_task_set(out)
    assert back.fingerprint == ts.fingerprint
    assert back.k == 3
    assert back.seed == 9
    assert back.origin == str(out.resolve())
    np.testing.assert_array_equal(back.turn_truth, ts.turn_truth)


def test_export_writes_the_hub_columns_and_the_dictionary_in_prompt_order(tmp_path: Path) -> None:
    ts = _generated()
    out = export_task_set(ts, tmp_path / "exported")

    saved = datasets.load_from_disk(str(out))
    assert set(saved.column_names) == {"input", "values", "output"}
    assert saved.to_list() == _episode_rows(ts)
    dictionary = json.loads((out / "dictionary.json").read_text())
    assert list(dictionary.items()) == list(zip(ts.words, ts.values.tolist(), strict=True))


def test_export_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        export_task_set(_generated(), tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- paper JSON


@pytest.mark.parametrize("nested", [False, True], ids=["plain", "under-dict_sum"])
def test_paper_generator_json_imports_with_one_key_per_turn(tmp_path: Path, nested: bool) -> None:
    ts = _generated()
    document = _paper_document(ts)
    path = _write_json(
        tmp_path / "dict_sum_30.json", {"dict_sum": document} if nested else document
    )

    back = import_task_set(path)
    assert back.k == 1
    assert back.words == ts.words
    np.testing.assert_array_equal(back.values, ts.values)
    np.testing.assert_array_equal(back.keys, ts.keys)
    np.testing.assert_array_equal(back.step_truth, ts.step_truth)
    assert back.origin == str(path.resolve())
    assert back.seed is None


def test_dictionary_order_of_the_file_is_kept(tmp_path: Path) -> None:
    ts = _generated()
    document = _paper_document(ts)
    document["dictionary"] = dict(reversed(list(ts.dictionary.items())))

    back = import_task_set(_write_json(tmp_path / "reversed.json", document))
    assert back.words == tuple(reversed(ts.words))
    assert [back.turn_keys(0, t)[0] for t in range(ts.turns)] == [
        ts.turn_keys(0, t)[0] for t in range(ts.turns)
    ]


# ----------------------------------------------------------------------------- hub layout


def _write_hub_folder(root: Path, ts: TaskSet) -> Path:
    (root / "data").mkdir(parents=True)
    rows = _episode_rows(ts)
    frame = pd.DataFrame({"id": range(len(rows)), **{c: [r[c] for r in rows] for c in rows[0]}})
    frame.to_parquet(root / "data" / "train-00000-of-00001.parquet")
    _write_json(root / "dictionary.json", ts.dictionary)
    (root / "README.md").write_text("# Long-Horizon-Execution (local copy)\n")
    return root


def _expected_turn_truth(ts: TaskSet, k: int) -> list[list[int]]:
    truths = []
    for row in _episode_rows(ts):
        values = row["values"]
        turns = len(values) // k
        truths.append([sum(values[: (t + 1) * k]) for t in range(turns)])
    return truths


def test_hub_folder_imports_and_rechunks_to_k3(tmp_path: Path) -> None:
    ts = _generated(turns=13)
    folder = _write_hub_folder(tmp_path / "Long-Horizon-Execution", ts)

    back = import_task_set(folder)
    assert back.k == 1
    np.testing.assert_array_equal(back.keys, ts.keys)

    chunked = back.rechunk(3)
    assert (chunked.k, chunked.turns) == (3, 4)  # the trailing 13th key is dropped
    assert chunked.turn_truth.tolist() == _expected_turn_truth(ts, 3)
    assert chunked.turn_keys(1, 2) == [ts.words[i] for i in ts.keys[1, 6:9]]


def test_a_data_file_inside_data_finds_the_dictionary_one_level_up(tmp_path: Path) -> None:
    ts = _generated()
    folder = _write_hub_folder(tmp_path / "hub", ts)

    back = import_task_set(folder / "data" / "train-00000-of-00001.parquet")
    np.testing.assert_array_equal(back.keys, ts.keys)


@pytest.mark.parametrize("fmt", ["jsonl", "json-array", "csv"])
def test_single_data_file_with_dictionary_beside_it(tmp_path: Path, fmt: str) -> None:
    ts = _generated()
    rows = _episode_rows(ts)
    if fmt == "jsonl":
        path = tmp_path / "episodes.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json-array":
        path = _write_json(tmp_path / "episodes.json", rows)
    else:
        path = tmp_path / "episodes.csv"
        pd.DataFrame({c: [json.dumps(r[c]) for r in rows] for c in rows[0]}).to_csv(
            path, index=False
        )
    _write_json(tmp_path / "dictionary.json", ts.dictionary)

    back = import_task_set(path)
    np.testing.assert_array_equal(back.keys, ts.keys)
    assert back.words == ts.words


def test_source_loader_imports_and_rechunks(tmp_path: Path) -> None:
    ts = _generated(turns=10)
    out = export_task_set(ts, tmp_path / "exported")

    loaded = load_task_set(
        samples=2, turns=3, k=2, dict_size=1, min_value=0, max_value=0, seed=0, source=str(out)
    )
    assert (loaded.samples, loaded.turns, loaded.k) == (2, 3, 2)
    assert loaded.turn_truth.tolist() == [row[:3] for row in _expected_turn_truth(ts, 2)[:2]]


def test_episodes_of_different_lengths_are_truncated_to_the_shortest(tmp_path: Path) -> None:
    ts = _generated()
    rows = _episode_rows(ts)
    for column in ("input", "values", "output"):
        rows[2][column] = rows[2][column][:7]
    path = _write_json(tmp_path / "ragged.json", _paper_document(ts, rows))

    with pytest.warns(UserWarning, match=r"task\.source: .*truncated to the shortest \(7 keys\)"):
        back = import_task_set(path)
    np.testing.assert_array_equal(back.keys, ts.keys[:, :7])


# ----------------------------------------------------------------------------- validation


def _tamper_rows(change):
    def build(tmp_path: Path) -> Path:
        ts = _generated()
        rows = _episode_rows(ts)
        change(rows)
        return _write_json(tmp_path / "tampered.json", _paper_document(ts, rows))

    return build


def _drop_last(rows, episode, column):
    rows[episode][column] = rows[episode][column][:-1]


def _set(rows, episode, column, step, value):
    rows[episode][column][step] = value


def _bump(rows, episode, column, step):
    rows[episode][column][step] += 1


def _unknown_format(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.txt"
    path.write_text("alarm, coach\n")
    return path


def _broken_json(tmp_path: Path) -> Path:
    path = tmp_path / "broken.json"
    path.write_text('{"dictionary": {"alarm": 3,')
    return path


def _no_episodes(tmp_path: Path) -> Path:
    return _write_json(tmp_path / "empty.json", _paper_document(_generated(), rows=[]))


def _hub_without_dictionary(tmp_path: Path) -> Path:
    folder = _write_hub_folder(tmp_path / "hub", _generated())
    (folder / "dictionary.json").unlink()
    return folder


def _export_without_dictionary(tmp_path: Path) -> Path:
    out = export_task_set(_generated(), tmp_path / "exported")
    (out / "dictionary.json").unlink()
    return out


def _export_with_stale_fingerprint(tmp_path: Path) -> Path:
    out = export_task_set(_generated(), tmp_path / "exported")
    meta = json.loads((out / "task_set.json").read_text())
    meta["fingerprint"] = "0" * 64
    _write_json(out / "task_set.json", meta)
    return out


def _non_integer_dictionary_value(tmp_path: Path) -> Path:
    ts = _generated()
    document = _paper_document(ts)
    document["dictionary"][ts.words[0]] = 1.5
    return _write_json(tmp_path / "bad_dictionary.json", document)


def _folder_without_data(tmp_path: Path) -> Path:
    (tmp_path / "nothing").mkdir()
    _write_json(tmp_path / "nothing" / "dictionary.json", {"alarm": 1})
    return tmp_path / "nothing"


INVALID = {
    "unknown format": (_unknown_format, r"tasks\.txt: unknown format; accepted: .*parquet"),
    "unreadable JSON": (_broken_json, r"broken\.json: not valid JSON"),
    "folder without data": (_folder_without_data, r"no saved dataset and no data files; accepted"),
    "values shorter": (
        _tamper_rows(lambda rows: _drop_last(rows, 3, "values")),
        r"episode 3: input has 12 keys but values has 11$",
    ),
    "output shorter": (
        _tamper_rows(lambda rows: _drop_last(rows, 1, "output")),
        r"episode 1: input has 12 keys but output has 11$",
    ),
    "key not in dictionary": (
        _tamper_rows(lambda rows: _set(rows, 1, "input", 4, "zzzzz")),
        r"episode 1, step 4: key 'zzzzz' is not in the dictionary",
    ),
    "value disagrees": (
        _tamper_rows(lambda rows: _bump(rows, 2, "values", 5)),
        r"episode 2, step 5: values says '\w+' is -?\d+ but the dictionary says -?\d+$",
    ),
    "output not running sum": (
        _tamper_rows(lambda rows: _bump(rows, 0, "output", 7)),
        r"episode 0, step 7: output is -?\d+ but the running sum of values is -?\d+$",
    ),
    "non-list cell": (
        _tamper_rows(lambda rows: rows[2].update(values="12")),
        r"episode 2: values must be a list of integers",
    ),
    "empty dataset": (_no_episodes, r"has no episodes"),
    "hub without dictionary": (_hub_without_dictionary, r"no dictionary\.json in .*hub"),
    "export without dictionary": (_export_without_dictionary, r"no dictionary\.json in"),
    "stale fingerprint": (_export_with_stale_fingerprint, r"do not match the fingerprint"),
    "non-integer dictionary value": (
        _non_integer_dictionary_value,
        r"value of '\w+' is 1\.5, not an integer",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_bad_sources_fail_with_a_task_source_message(tmp_path: Path, case: str) -> None:
    build, pattern = INVALID[case]
    path = build(tmp_path)
    with pytest.raises(ValueError) as info:
        import_task_set(path)
    message = str(info.value)
    assert message.startswith("task.source: ")
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_value_mismatch_names_the_dictionary_value(tmp_path: Path) -> None:
    ts = _generated()
    rows = _episode_rows(ts)
    word = rows[2]["input"][5]
    rows[2]["values"][5] = ts.dictionary[word] + 1
    path = _write_json(tmp_path / "tampered.json", _paper_document(ts, rows))

    with pytest.raises(
        ValueError, match=re.escape(f"but the dictionary says {ts.dictionary[word]}")
    ):
        import_task_set(path)


# ----------------------------------------------------------------------------- CLI


def test_cli_export_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_export"
    argv = ["export", str(out), "--samples", "3", "--turns", "4", "--k", "2", "--seed", "5"]
    assert main([*argv, "--dict-size", "25"]) == 0
    exported = capsys.readouterr().out

    assert main(["inspect", str(out)]) == 0
    report = capsys.readouterr().out
    expected = generate_task_set(samples=3, turns=4, k=2, dict_size=25, seed=5)
    for line in ("episodes: 3", "steps: 8", "k: 2 (4 turns)", "dictionary size: 25"):
        assert line in report.splitlines()
    assert f"fingerprint: {expected.fingerprint}" in report.splitlines()
    assert f"fingerprint: {expected.fingerprint}" in exported.splitlines()


def test_cli_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lhe-dataset: error: task.source: no such file or directory")
    assert err.count("\n") == 1

    with pytest.raises(SystemExit) as info:
        main(["export", str(tmp_path / "x"), "--samples", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--samples" in err and "positive integer" in err
    assert err.count("\n") == 1
