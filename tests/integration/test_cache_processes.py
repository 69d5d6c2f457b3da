"""The response cache shared by processes: writers racing on one entry, a reader during writes,
and the jobs of a sweep (separate processes) serving each other's replies."""

import json
import multiprocessing
import subprocess
import sys

import pytest

from harness.run.cache import ResponseCache
from providers.base import ChatResult

KEY = "ab" + "0" * 62
WRITERS, WRITES, READS = 3, 40, 400
# Entries of different sizes, so a torn write could not pass for a whole one.
CONTENTS = [f"<answer>{i}</answer>" + "x" * (200_000 * (i + 1)) for i in range(WRITERS)]


def write_many(root, content, barrier):
    cache = ResponseCache(root)
    barrier.wait()
    for _ in range(WRITES):
        cache.put(KEY, ChatResult(content=content))


def read_many(root, barrier, seen):
    cache = ResponseCache(root)
    barrier.wait()
    for _ in range(READS):
        result = cache.get(KEY)
        seen.put("miss" if result is None else result.content[:20])


def test_processes_writing_one_entry_never_show_a_reader_half_of_it(tmp_path):
    """A reader that starts after the first whole write must never miss, whatever the writers
    are doing (a plain ``write_text`` truncates the file first: the reader then sees a partial
    entry, which ``get`` counts as a miss)."""
    ResponseCache(tmp_path).put(KEY, ChatResult(content=CONTENTS[0]))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS + 1)
    seen = context.Queue()
    processes = [
        context.Process(target=write_many, args=(tmp_path, content, barrier))
        for content in CONTENTS
    ]
    processes.append(context.Process(target=read_many, args=(tmp_path, barrier, seen)))
    for process in processes:
        process.start()
    results = [seen.get(timeout=120) for _ in range(READS)]
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert "miss" not in results
    assert set(results) <= {content[:20] for content in CONTENTS}
    final = ResponseCache(tmp_path).get(KEY)
    assert final is not None and final.content in CONTENTS
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [f"{KEY}.json"]  # no temporary file left behind


@pytest.mark.slow
def test_the_jobs_of_a_sweep_share_one_cache_across_processes(tmp_path):
    """Jobs are separate processes (joblib runs them in parallel): what the jobs of one sweep
    stored serves the jobs of the next entirely, and parallel writers leave whole entries."""
    cache_dir = tmp_path / "cache"

    def sweep(folder):
        command = [
            sys.executable, "-m", "harness.cli", "-m", "hydra/launcher=joblib",
            "model=simulated", "model.temperature=0", "model.p=0.9", "run.seed=1,2",
            "task.samples=3", "task.turns=4", "metrics.bootstrap=0", "run.progress=false",
            f"cache.dir={cache_dir}", f"hydra.sweep.dir={folder}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return [json.loads(p.read_text())["cache"] for p in sorted(folder.glob("*/summary.json"))]

    first = sweep(tmp_path / "first")
    assert [c["misses"] for c in first] == [12, 12]  # run.seed differs: distinct requests
    second = sweep(tmp_path / "second")
    assert [(c["hits"], c["misses"]) for c in second] == [(12, 0), (12, 0)]
    assert len(list(cache_dir.rglob("*.json"))) == 24
