"""Run every episode of a task set against a provider and append per-turn records.

Each episode is its own coroutine, so a slow reply holds up only its own episode (the paper's
code advanced all episodes in lock-step, so every turn waited for the slowest). A semaphore
bounds how many episodes are in flight. A provider error ends its episode without a score and
is re-run on resume; a fatal error (bad key, unknown model) stops the whole run at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.config import StopConfig, StrategyConfig
from harness.economics.budget import Budget
from harness.records.schema import (
    UNSCORED_STATUSES,
    TurnRecord,
    TurnWriter,
    clip,
    fails_task,
    latest_records,
    read_records,
)
from harness.run.conversation import Conversation
from harness.run.history import HistoryPolicy, Shown
from harness.run.stopping import decided_length, horizon_decided
from harness.run.strategies import draw_turn, sample_seed
from providers.base import REQUEST_TAG, FatalProviderError, Provider, Sampling
from tasks.parsing import ParsedReply, strip_reasoning
from tasks.prompts import system_prompt
from tasks.taskset import TaskSet


@dataclass
class RunProgress:
    """Counters the runner keeps while it works (for the progress line and the summary)."""

    episodes_total: int
    episodes_done: int = 0
    turns_done: int = 0
    turns_resumed: int = 0
    started: float = field(default_factory=time.monotonic)
    fatal_error: str | None = None
    stopped_by: str | None = None
    """Config field that ended the run early (``budget.max_usd``, ``stop.when_decided``)."""
    length_cap: int | None = None
    """Turns per episode that ``stop.when_decided`` found enough (task accuracy is surely
    below s by then); later turns are not run."""
    provider_errors: int = 0
    """Turns of this session that failed at the provider after every retry."""
    last_provider_error: str | None = None
    """The error of the latest of them, for the run's closing note."""


def request_seed(run_seed: int, episode: int, turn: int) -> int:
    """A per-request sampling seed that does not depend on scheduling order (sample 0)."""
    return sample_seed(run_seed, episode, turn, 0)


def finished_turns(records: list[TurnRecord]) -> dict[int, list[TurnRecord]]:
    """Per episode, the leading run of turns that need no re-run (provider errors excluded).

    Later records for the same turn supersede earlier ones, so a turn that failed and then
    succeeded on resume counts once.
    """
    by_episode: dict[int, list[TurnRecord]] = {}
    for (episode, _turn), record in sorted(latest_records(records).items()):
        done = by_episode.setdefault(episode, [])
        if record.status == "provider_error" or record.turn != len(done):
            continue
        if done and done[-1].status == "context_exceeded":
            continue
        done.append(record)
    return by_episode


CAP_MARGIN = 1.25
"""Episodes run this much past the length where task accuracy is surely below s."""


class Runner:
    """Schedules episodes and writes their records; see the module docstring."""

    def __init__(
        self,
        *,
        task_set: TaskSet,
        provider: Provider,
        sampling: Sampling,
        run_dir: Path,
        concurrency: int,
        policy: HistoryPolicy | None = None,
        window: int | None = None,
        first_called_turn: int = 0,
        run_seed: int = 0,
        budget: Budget | None = None,
        stop: StopConfig | None = None,
        s: float = 0.5,
        decision_seed: int = 0,
        strategy: StrategyConfig | None = None,
        on_turn: Callable[[TurnRecord, RunProgress], None] | None = None,
        episodes: Sequence[int] | None = None,
        read_from: Path | None = None,
    ) -> None:
        """See the class; for ``run.workers``, two more.

        ``episodes`` is the shard this runner owns (default: all); ``read_from`` the run
        directory whose ``turns.jsonl`` holds earlier sessions when ``run_dir`` is a
        worker's own.
        """
        self.task_set = task_set
        self.provider = provider
        self.sampling = sampling
        self.policy = policy or HistoryPolicy()
        self.window = window
        self.first_called_turn = first_called_turn
        self.run_dir = run_dir
        self.concurrency = concurrency
        self.run_seed = run_seed
        self.on_turn = on_turn
        self.budget = budget or Budget()
        self.stop_config = stop or StopConfig()
        self.strategy = strategy or StrategyConfig()
        self.s = s
        """Success threshold that ``stop.when_decided`` decides the horizon at."""
        # index correctness of finished episodes, for stop.when_decided
        self._finished_rows: dict[int, np.ndarray] = {}
        self._decision_rng = np.random.default_rng(decision_seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._aborted = False
        self.system = system_prompt(task_set.dictionary, self.policy.mode, task_set.k)
        self.episodes = list(range(task_set.samples) if episodes is None else episodes)
        self.read_from = read_from or run_dir
        self.progress = RunProgress(episodes_total=len(self.episodes))

    async def run(self) -> RunProgress:
        """Run (or continue) every episode; returns the counters."""
        earlier = read_records(self.read_from)
        if len(self.episodes) < self.task_set.samples:
            mine = set(self.episodes)
            earlier = [record for record in earlier if record.episode in mine]
        for record in earlier:  # paid for in an earlier session: it counts against the budget
            self.budget.add(record)
        self.budget.sync()
        self._check_budget()
        prior = finished_turns(earlier)
        self.progress.turns_resumed = sum(len(done) for done in prior.values())
        semaphore = asyncio.Semaphore(self.concurrency)
        with TurnWriter(self.run_dir) as writer:

            async def guarded(episode: int) -> None:
                async with semaphore:
                    if self.progress.stopped_by is None:
                        with self.provider.episode(episode):
                            await self._run_episode(episode, prior.get(episode, []), writer)

            self._tasks = [asyncio.create_task(guarded(e)) for e in self.episodes]
            try:
                await asyncio.gather(*self._tasks)
            except FatalProviderError as exc:
                self.progress.fatal_error = str(exc)
                self.abort()
            except asyncio.CancelledError:
                if not self._aborted:
                    raise
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.budget.sync()
        return self.progress

    def stop(self, reason: str) -> None:
        """Start no new turn; turns in flight finish and are recorded."""
        if self.progress.stopped_by is None:
            self.progress.stopped_by = reason

    def abort(self) -> None:
        """Drop the turns in flight too: nothing half-done is recorded (a resume redoes them)."""
        self._aborted = True
        for task in self._tasks:
            task.cancel()

    def _replay(self, conversation: Conversation, record: TurnRecord) -> None:
        """Rebuild one finished turn of the history from its record (resume)."""
        conversation.ask(record.keys)
        values = self._values(record.keys)
        if record.filled:
            shown = self.policy.rewritten(
                record.episode, record.turn, record.truth, record.keys, values
            )
        else:
            # The record's own parse, not a re-parse: a long reply is stored cut.
            parsed = ParsedReply(
                status=record.status,  # type: ignore[arg-type]
                answer=record.answer,
                visible=strip_reasoning(record.reply)[0],
            )
            shown = self.policy.shown(
                record.episode, record.turn, record.truth, parsed, record.keys, values
            )
        conversation.answer(shown)

    def _values(self, keys: list[str]) -> list[int]:
        """The true values of a turn's keys (a rewritten CoT turn shows them line by line)."""
        return [self.task_set.dictionary[key] for key in keys]

    def _base_record(self, episode: int, turn: int, keys: list[str], base: int) -> dict:
        return dict(
            episode=episode,
            turn=turn,
            keys=keys,
            delta=int(self.task_set.turn_delta[episode, turn]),
            truth=int(self.task_set.turn_truth[episode, turn]),
            base=base,
        )

    def _check_budget(self) -> None:
        """Stop starting turns once a spending limit is reached."""
        exhausted = self.budget.exhausted()
        if exhausted:
            self.stop(exhausted)

    def _emit(self, writer: TurnWriter, record: TurnRecord) -> None:
        writer.write(record)
        self.progress.turns_done += 1
        if record.status == "provider_error":
            self.progress.provider_errors += 1
            self.progress.last_provider_error = record.error
        self.budget.add(record)
        self._check_budget()
        if self.on_turn is not None:
            self.on_turn(record, self.progress)

    def _episode_finished(self, episode: int, records: list[TurnRecord]) -> None:
        """Count a finished episode and, with ``stop.when_decided``, check the horizon."""
        self.progress.episodes_done += 1
        if not self.stop_config.when_decided:
            return
        row = np.full(self.task_set.turns, np.nan)
        for record in records:
            if record.status not in UNSCORED_STATUSES:
                row[record.turn] = 0.0 if fails_task(record) else 1.0
        self._finished_rows[episode] = row
        prefix = 0  # episodes 0..prefix-1 have all finished: an unbiased sample
        while prefix in self._finished_rows:
            prefix += 1
        if prefix < self.stop_config.min_episodes or self.progress.stopped_by is not None:
            return
        if prefix % max(1, prefix // 20):  # re-decide at about 5% steps, not every episode
            return
        rows = np.vstack([self._finished_rows[e] for e in range(prefix)])
        decided = decided_length(rows, s=self.s, rng=self._decision_rng)
        if decided is not None:
            # The latest decision, with a margin: taking the smallest of many noisy decisions
            # would cut episodes short of the crossing.
            self.progress.length_cap = math.ceil(CAP_MARGIN * decided) + 1
        if horizon_decided(
            rows,
            k=self.task_set.k,
            s=self.s,
            precision=self.stop_config.horizon_precision,
            rng=self._decision_rng,
        ):
            self.stop("stop.when_decided")

    def _ended(self, records: list[TurnRecord]) -> bool:
        """True when an episode's records so far mean it must not continue."""
        if not records:
            return False
        last = records[-1]
        if last.status == "context_exceeded":
            return True
        return self.stop_config.after_failure and fails_task(last)

    async def _run_episode(self, episode: int, done: list[TurnRecord], writer: TurnWriter) -> None:
        conversation = Conversation(system=self.system, window=self.window)
        for record in done:
            self._replay(conversation, record)
        records = list(done)
        for turn in range(len(done), self.task_set.turns):
            if self._ended(records) or self.progress.stopped_by is not None:
                break
            if self.progress.length_cap is not None and turn >= self.progress.length_cap:
                break
            keys = self.task_set.turn_keys(episode, turn)
            common = self._base_record(episode, turn, keys, conversation.shown_total)
            values = self._values(keys)
            if turn < self.first_called_turn:
                shown = self.policy.rewritten(episode, turn, common["truth"], keys, values)
                conversation.ask(keys)
                conversation.answer(shown)
                record = TurnRecord(
                    **common,
                    status="filled",
                    filled=True,
                    shown=shown.value,
                    shown_text=shown.text,
                    injected=shown.injected,
                )
                self._emit(writer, record)
                records.append(record)
                continue
            messages = conversation.ask(keys)
            REQUEST_TAG.set((episode, turn))  # names the requests' lines in a batch file
            draw = await draw_turn(
                self.provider,
                messages,
                self.sampling,
                self.strategy,
                lambda i, e=episode, t=turn: sample_seed(self.run_seed, e, t, i),
            )
            result = draw.combined()
            reasoning, _ = clip(result.reasoning)
            call = dict(
                usage=result.usage,
                latency_s=result.latency_s,
                finish_reason=result.finish_reason,
                retries=result.retries,
                retry_reasons=result.retry_reasons,
                cache_hit=result.cache_hit,
                model_id=result.model_id,
                error=result.error,
                reasoning=reasoning,
            )
            if result.outcome != "ok":
                stored, length = clip(result.content)
                record = TurnRecord(
                    **common, **call, status=result.outcome, reply=stored, reply_chars=length
                )
                self._emit(writer, record)
                records.append(record)
                conversation.drop_unanswered()
                if result.outcome == "provider_error":
                    return  # not finished: a resume re-runs it
                break
            parsed = draw.winner.parsed  # type: ignore[union-attr]  # no failure: a winner
            shown: Shown = self.policy.shown(episode, turn, common["truth"], parsed, keys, values)
            stored, length = clip(result.content)
            record = TurnRecord(
                **common,
                **call,
                status=parsed.status,
                answer=parsed.answer,
                reply=stored,
                reply_chars=length,
                shown=shown.value,
                shown_text=shown.text if shown.written else None,
                injected=shown.injected,
                **draw.record_fields(),
            )
            self._emit(writer, record)
            records.append(record)
            conversation.answer(shown)
        self._episode_finished(episode, records)
