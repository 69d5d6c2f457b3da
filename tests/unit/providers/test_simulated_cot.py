import re

from harness.records.schema import read_records
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set

LINE = re.compile(r"^(-?\d+) \+ ([a-z]+) \((-?\d+)\) = (-?\d+)$")


async def test_simulated_executor_shows_its_working_in_cot_mode_with_misread_lines(tmp_path):
    task_set = generate_task_set(samples=40, turns=4, k=3, seed=2)
    runner = Runner(
        task_set=task_set,
        provider=SimulatedProvider(SimulatedConfig(p=0.8, seed=5)),
        sampling=Sampling(),
        run_dir=tmp_path,
        concurrency=8,
        policy=HistoryPolicy(mode="cot"),
    )
    await runner.run()
    misreads = 0
    for record in read_records(tmp_path):
        *lines, tag = record.reply.split("\n")
        parsed = [LINE.fullmatch(line) for line in lines]
        assert len(parsed) == 3 and all(parsed)
        before = record.base
        misses = []
        for match, word in zip(parsed, record.keys, strict=True):
            start, name, value, after = int(match[1]), match[2], int(match[3]), int(match[4])
            assert (start, name, start + value) == (before, word, after)
            misses.append(value - task_set.dictionary[word])
            assert abs(misses[-1]) <= 10
            before = after
        assert tag == f"<answer>{before}</answer>" and record.answer == before
        assert record.answer == record.base + record.delta + sum(misses)
        misreads += sum(miss != 0 for miss in misses)
    assert 0.1 < misreads / (40 * 4 * 3) < 0.3  # p = 0.8 per key
