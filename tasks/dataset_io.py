"""Import and export task sets as Hugging Face ``datasets``, including the paper's formats.

An exported task set is a ``save_to_disk`` directory with one row per episode and the columns
of the paper's hub dataset (``input``: the keys as words, ``values``, ``output``: running
sums), plus ``dictionary.json`` (word -> value, in prompt order) and ``task_set.json`` (K, seed
and fingerprint), so a re-import rebuilds the identical task set.

Three layouts are read: such a directory; the JSON written by the paper's generator
(``dictionary`` + ``ground_truth_data``, optionally under ``dict_sum``); and the hub dataset's
data files (parquet, json/jsonl or csv) with a ``dictionary.json`` beside them. Whatever the
layout, every key, value and running sum is checked against the dictionary before the set is
used: a bad row would otherwise become a wrong ground truth that a model is scored against.
Episodes and steps in error messages are counted from 0.
"""

from __future__ import annotations

import ast
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.exceptions import DatasetsError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.taskset import TaskSet

DICTIONARY_FILE = "dictionary.json"
"""Word -> value of the episodes' dictionary, in prompt order, beside the episode rows."""
METADATA_FILE = "task_set.json"
"""K, seed, origin and fingerprint of an exported task set."""
COLUMNS = ("input", "values", "output")
"""Episode columns, named as in the paper's hub dataset."""

_SUFFIX_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
# JSON files that ``save_to_disk`` and this module write beside the rows; never episode data.
_NOT_DATA = {DICTIONARY_FILE, METADATA_FILE, "dataset_info.json", "state.json", "dataset_dict.json"}
_ACCEPTED = (
    "accepted: a directory written by export_task_set (a save_to_disk dataset with "
    f"{DICTIONARY_FILE}), the paper's generator JSON (dictionary + ground_truth_data, optionally "
    "under dict_sum), or parquet/json/jsonl/csv files with columns input, values, output and "
    f"a {DICTIONARY_FILE} beside them"
)
_FEATURES = datasets.Features(
    {
        "input": datasets.List(datasets.Value("string")),
        "values": datasets.List(datasets.Value("int64")),
        "output": datasets.List(datasets.Value("int64")),
    }
)
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, pa.ArrowException, DatasetsError)


class TaskSetMetadata(BaseModel):
    """What ``task_set.json`` records so that a re-import rebuilds the exact task set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(ge=1)
    """Keys per user turn the set was exported with (the rows themselves hold no turns)."""
    seed: int | None
    """Seed the set was generated from, or None if it was itself imported."""
    origin: str
    """Where the exported set came from: ``generated`` or the path it was imported from."""
    fingerprint: str
    """``TaskSet.fingerprint`` at export; a re-import must reproduce it."""


@dataclass(frozen=True)
class _RawEpisodes:
    """Episode rows and dictionary as read from disk, before any validation."""

    table: pa.Table
    dictionary: dict[str, int]
    metadata: TaskSetMetadata | None


def _error(message: str) -> ValueError:
    return ValueError(f"task.source: {message}")


def _describe(exc: BaseException) -> str:
    """One line about a third-party failure; ``datasets`` hides the real cause in __cause__."""
    cause = exc.__cause__ or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- export


def export_task_set(task_set: TaskSet, path: Path) -> Path:
    """Save ``task_set`` as a dataset directory at ``path`` and return the resolved path.

    The directory must not exist yet or be empty: ``save_to_disk`` would leave stale shards
    of an earlier, larger dataset beside the new ones.
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not an empty directory")
    episodes, steps = task_set.keys.shape
    if episodes * steps >= 2**31:
        raise ValueError(f"{episodes} x {steps} keys exceed what one list column can hold")
    # Built as Arrow list arrays straight from numpy: no Python object per key.
    offsets = pa.array(np.arange(0, episodes * steps + 1, steps, dtype=np.int32))
    words = pa.array(task_set.words, type=pa.string())
    columns = {
        "input": pa.ListArray.from_arrays(offsets, words.take(pa.array(task_set.keys.ravel()))),
        "values": pa.ListArray.from_arrays(offsets, pa.array(task_set.step_values.ravel())),
        "output": pa.ListArray.from_arrays(offsets, pa.array(task_set.step_truth.ravel())),
    }
    datasets.Dataset.from_dict(columns, features=_FEATURES).save_to_disk(str(path))
    (path / DICTIONARY_FILE).write_text(json.dumps(task_set.dictionary, indent=1) + "\n")
    metadata = TaskSetMetadata(
        k=task_set.k, seed=task_set.seed, origin=task_set.origin, fingerprint=task_set.fingerprint
    )
    (path / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- import


def import_task_set(path: Path) -> TaskSet:
    """Read a task set in any accepted layout, checked row by row against its dictionary.

    K comes back from ``task_set.json`` when there is one (an export of this module); the
    paper's files have no turns, so their episodes keep K=1 for ``TaskSet.rechunk`` to cut.

    Raises:
        ValueError: starting with ``task.source:``, naming what is wrong and where.
    """
    path = Path(path).expanduser().resolve()
    return _to_task_set(_read(path), origin=str(path))


def _read(path: Path) -> _RawEpisodes:
    if not path.exists():
        raise _error(f"no such file or directory: {path}")
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _read_saved_dataset(path)
        return _read_data_files(_data_files(path), places=[path])
    if path.suffix.lower() == ".json":
        paper = _read_paper_json(path)
        if paper is not None:
            return paper
    if path.suffix.lower() not in _SUFFIX_FORMATS:
        raise _error(f"{path.name}: unknown format; {_ACCEPTED}")
    places = [path.parent]
    if path.parent.name == "data":  # the hub keeps its rows in data/ and the dictionary above
        places.append(path.parent.parent)
    return _read_data_files([path], places=places)


def _read_saved_dataset(path: Path) -> _RawEpisodes:
    dictionary = _read_dictionary(_find_dictionary([path]))
    try:
        loaded = datasets.load_from_disk(str(path))
    except _READ_ERRORS as exc:
        raise _error(f"cannot read the saved dataset in {path}: {_describe(exc)}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise _error(f"{path} holds the splits {sorted(loaded)}; point it at one split")
        (loaded,) = loaded.values()
    return _RawEpisodes(loaded.with_format("arrow")[:], dictionary, _read_metadata(path))


def _data_files(directory: Path) -> list[Path]:
    """Episode files at the top of ``directory`` and anywhere under its ``data/`` folder."""
    candidates = [p for p in directory.iterdir() if p.is_file()]
    if (directory / "data").is_dir():
        candidates += [p for p in (directory / "data").rglob("*") if p.is_file()]
    files = sorted(
        p
        for p in candidates
        if p.suffix.lower() in _SUFFIX_FORMATS
        and p.name not in _NOT_DATA
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    if not files:
        raise _error(f"{directory} holds no saved dataset and no data files; {_ACCEPTED}")
    return files


def _read_data_files(files: Sequence[Path], places: list[Path]) -> _RawEpisodes:
    formats = sorted({_SUFFIX_FORMATS[p.suffix.lower()] for p in files})
    if len(formats) > 1:
        raise _error(
            f"{places[0]} holds data files of several formats ({', '.join(formats)}); "
            "point task.source at the files of one format"
        )
    dictionary_path = _find_dictionary(places)
    dictionary = _read_dictionary(dictionary_path)
    try:
        # A packaged builder on local files: nothing is fetched from the hub.
        dataset = datasets.load_dataset(
            formats[0], data_files=[str(p) for p in files], split="train"
        )
    except _READ_ERRORS as exc:
        names = ", ".join(p.name for p in files[:3]) + (", ..." if len(files) > 3 else "")
        raise _error(f"cannot read {names} as {formats[0]}: {_describe(exc)}") from exc
    table = dataset.with_format("arrow")[:]
    return _RawEpisodes(table, dictionary, _read_metadata(dictionary_path.parent))


def _read_paper_json(path: Path) -> _RawEpisodes | None:
    """The paper generator's JSON, or None if ``path`` holds rows for the ``json`` builder."""
    try:
        document = _load_json(path)
    except ValueError as exc:
        cause = exc.__cause__
        if isinstance(cause, json.JSONDecodeError) and cause.msg == "Extra data":
            return None  # JSON lines: one episode row per line, for the ``json`` builder
        raise
    if isinstance(document, list):  # a JSON array of episode rows
        return None
    if not isinstance(document, dict):
        raise _error(f"{path.name}: a JSON {type(document).__name__}; {_ACCEPTED}")
    body = document.get("dict_sum", document)
    if isinstance(body, dict) and "ground_truth_data" in body:
        if "dictionary" not in body:
            raise _error(f"{path.name}: ground_truth_data without a dictionary beside it")
        dictionary = _check_dictionary(body["dictionary"], f"{path.name}: dictionary")
        return _RawEpisodes(_rows_to_table(body["ground_truth_data"], path.name), dictionary, None)
    if "input" in document:  # a single episode row
        return None
    raise _error(f"{path.name}: a JSON object with keys {sorted(document)[:6]}; {_ACCEPTED}")


def _rows_to_table(rows: Any, where: str) -> pa.Table:
    if not isinstance(rows, list):
        raise _error(f"{where}: ground_truth_data must be a list of episodes")
    for episode, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _error(f"episode {episode}: expected an object with input, values and output")
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise _error(f"episode {episode}: no {', '.join(missing)}")
    schema = _FEATURES.arrow_schema
    arrays = [
        _list_array([row[name] for row in rows], schema.field(name).type, name) for name in COLUMNS
    ]
    return pa.Table.from_arrays(arrays, names=list(COLUMNS))


def _list_array(cells: list[Any], list_type: pa.DataType, name: str) -> pa.Array:
    """Convert one column of Python lists, naming the first episode that does not fit."""
    try:
        return pa.array(cells, type=list_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        for episode, cell in enumerate(cells):
            try:
                pa.array([cell], type=list_type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise _error(
                    f"episode {episode}: {name} must be a list of "
                    f"{_item_name(list_type)}, got {str(cell)[:60]}"
                ) from exc
        raise _error(f"column {name}: {_describe(exc)}") from exc


def _item_name(list_type: pa.DataType) -> str:
    return "words" if pa.types.is_string(list_type.value_type) else "integers"


# ----------------------------------------------------------------------------- side files


def _load_json(path: Path) -> Any:
    """Parse a JSON file in key order, refusing duplicate keys (json keeps the last silently)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _error(f"{path.name}: key {key!r} appears twice in one JSON object")
            seen[key] = value
        return seen

    try:
        return json.loads(path.read_bytes(), object_pairs_hook=no_duplicates)
    except OSError as exc:
        raise _error(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise _error(f"{path.name}: not UTF-8 text; {_ACCEPTED}") from exc
    except json.JSONDecodeError as exc:
        raise _error(f"{path.name}: not valid JSON ({exc})") from exc


def _find_dictionary(places: list[Path]) -> Path:
    for place in places:
        if (place / DICTIONARY_FILE).is_file():
            return place / DICTIONARY_FILE
    where = " or ".join(str(p) for p in places)
    raise _error(
        f"no {DICTIONARY_FILE} in {where}: the episodes need the dictionary (word -> value, "
        "in prompt order) their keys were drawn from"
    )


def _read_dictionary(path: Path) -> dict[str, int]:
    return _check_dictionary(_load_json(path), str(path))


def _check_dictionary(raw: Any, where: str) -> dict[str, int]:
    """Word -> value in file order, which is the order the system prompt lists them in."""
    if not isinstance(raw, dict) or not raw:
        raise _error(f"{where}: must be a non-empty JSON object of word -> integer")
    for word, value in raw.items():
        if not word.strip():
            raise _error(f"{where}: an empty word")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(f"{where}: value of {word!r} is {value!r}, not an integer")
        if abs(value) >= 2**62:  # running sums must stay inside int64
            raise _error(f"{where}: value of {word!r} is out of range: {value}")
    return dict(raw)


def _read_metadata(directory: Path) -> TaskSetMetadata | None:
    path = directory / METADATA_FILE
    if not path.is_file():
        return None
    try:
        return TaskSetMetadata.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise _error(f"{path}: {field}: {first['msg']}") from exc


# ----------------------------------------------------------------------------- validation


def _column(table: pa.Table, name: str) -> pa.Array:
    """One episode column as a validated ``list<...>`` array without null rows or items."""
    if name not in table.column_names:
        raise _error(
            f"no column {name!r} (found {', '.join(table.column_names)}); "
            f"episodes need columns {', '.join(COLUMNS)}"
        )
    column = table.column(name)
    list_type = _FEATURES.arrow_schema.field(name).type
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = _list_array(_parse_text_cells(column.to_pylist(), name), list_type, name)
    try:
        array = column.cast(list_type)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _error(
            f"column {name} must hold lists of {_item_name(list_type)}, "
            f"found {column.type} ({_describe(exc)})"
        ) from exc
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        episode = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise _error(f"episode {episode}: {name} is missing")
    return array


def _parse_text_cells(cells: list[str | None], name: str) -> list[Any]:
    """CSV has no list type: each cell holds a JSON array or a Python list literal."""
    parsed: list[Any] = []
    for episode, cell in enumerate(cells):
        if cell is None:
            parsed.append(None)
            continue
        try:
            value = json.loads(cell)
        except ValueError:
            try:
                value = ast.literal_eval(cell)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = None
        if not isinstance(value, list):
            raise _error(f"episode {episode}: {name} is not a list: {cell[:60]!r}")
        parsed.append(value)
    return parsed


def _locate(offsets: np.ndarray, position: int) -> str:
    episode = int(np.searchsorted(offsets, position, side="right") - 1)
    return f"episode {episode}, step {position - int(offsets[episode])}"


def _first_null(array: pa.Array) -> int | None:
    if not array.null_count:
        return None
    return int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])


def _to_task_set(raw: _RawEpisodes, origin: str) -> TaskSet:
    """Check every row against the dictionary and build the rectangular TaskSet."""
    table = raw.table
    if table.num_rows == 0:
        raise _error(f"{origin} has no episodes")
    words = tuple(raw.dictionary)
    word_values = np.fromiter(raw.dictionary.values(), dtype=np.int64, count=len(words))
    columns = {name: _column(table, name) for name in COLUMNS}
    lengths = {name: pc.list_value_length(a).to_numpy() for name, a in columns.items()}
    n_keys = lengths["input"]
    for name in COLUMNS[1:]:
        bad = np.flatnonzero(lengths[name] != n_keys)
        if bad.size:
            episode = int(bad[0])
            raise _error(
                f"episode {episode}: input has {n_keys[episode]} keys "
                f"but {name} has {lengths[name][episode]}"
            )
    if (n_keys == 0).any():
        raise _error(f"episode {int(np.flatnonzero(n_keys == 0)[0])} has no keys")
    offsets = np.concatenate(([0], np.cumsum(n_keys)))

    flat = {name: pc.list_flatten(a) for name, a in columns.items()}
    for name, array in flat.items():
        position = _first_null(array)
        if position is not None:
            raise _error(f"{_locate(offsets, position)}: {name} is null")
    index = pc.index_in(flat["input"], value_set=pa.array(words, type=pa.string()))
    position = _first_null(index)
    if position is not None:
        word = flat["input"][position].as_py()
        raise _error(
            f"{_locate(offsets, position)}: key {word!r} is not in the dictionary "
            f"({len(words)} words)"
        )
    key_index = index.to_numpy().astype(np.int32, copy=False)
    values = flat["values"].to_numpy()
    bad = np.flatnonzero(values != word_values[key_index])
    if bad.size:
        p = int(bad[0])
        raise _error(
            f"{_locate(offsets, p)}: values says {words[key_index[p]]!r} is {values[p]} "
            f"but the dictionary says {word_values[key_index[p]]}"
        )
    running = np.cumsum(values)
    before_episode = np.concatenate(([0], running[offsets[1:-1] - 1]))
    running -= np.repeat(before_episode, n_keys)
    outputs = flat["output"].to_numpy()
    bad = np.flatnonzero(outputs != running)
    if bad.size:
        p = int(bad[0])
        raise _error(
            f"{_locate(offsets, p)}: output is {outputs[p]} "
            f"but the running sum of values is {running[p]}"
        )

    steps = int(n_keys.min())
    if int(n_keys.max()) == steps:
        keys = key_index.reshape(len(n_keys), steps)
    else:
        warnings.warn(
            f"task.source: episodes have {steps} to {int(n_keys.max())} keys; "
            f"all are truncated to the shortest ({steps} keys)",
            stacklevel=3,
        )
        keys = key_index[offsets[:-1, None] + np.arange(steps)]
    return _with_metadata(words, word_values, keys, raw.metadata, origin)


def _with_metadata(
    words: tuple[str, ...],
    values: np.ndarray,
    keys: np.ndarray,
    metadata: TaskSetMetadata | None,
    origin: str,
) -> TaskSet:
    if metadata is None:
        return TaskSet(words=words, values=values, keys=keys, k=1, origin=origin)
    if keys.shape[1] % metadata.k:
        raise _error(
            f"{METADATA_FILE} says k={metadata.k}, but episodes have {keys.shape[1]} keys, "
            "not a multiple of it"
        )
    task_set = TaskSet(
        words=words, values=values, keys=keys, k=metadata.k, origin=origin, seed=metadata.seed
    )
    if task_set.fingerprint != metadata.fingerprint:
        raise _error(
            f"the episodes do not match the fingerprint in {METADATA_FILE}: the rows or "
            f"{DICTIONARY_FILE} changed after export"
        )
    return task_set
