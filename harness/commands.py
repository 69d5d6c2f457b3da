"""The small console commands: ``lhe-summarize``, ``lhe-report`` and ``lhe-cache``.

They sit above every stage (they read a run directory, recompute, and write what the later
stages write), so they live beside ``cli.py`` rather than inside a stage they would have to
reach out of.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.analysis.run_summary import SUMMARY_FILE
from harness.analysis.summary import summarize
from harness.report.run_page import write_run_report
from harness.report.sweep_page import write_sweep_report
from harness.report.text import format_table
from harness.run.cache import ResponseCache

REPORT_TURNS = (1, 5, 10, 20, 50, 100)


def summarize_main(argv: list[str] | None = None) -> None:
    """``lhe-summarize DIR``: recompute a run's summary from its files, without any model call."""
    parser = argparse.ArgumentParser(prog="lhe-summarize", description=summarize_main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--s", type=float, default=None, help="success threshold of H_s")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.run_dir, s=args.s, resamples=args.bootstrap)
    except FileNotFoundError as exc:
        print(f"lhe-summarize: error: {exc}", file=sys.stderr)
        sys.exit(2)
    summary.write(args.run_dir)
    print(format_table(summary, args.run_dir, REPORT_TURNS))


def report_main(argv: list[str] | None = None) -> None:
    """``lhe-report DIR``: a run's figures and HTML report, or a sweep's report.

    DIR holding a ``summary.json`` is one run; any other DIR is searched for runs, which are
    aggregated into ``DIR/report/``.
    """
    parser = argparse.ArgumentParser(prog="lhe-report", description=report_main.__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory, or a folder of runs")
    args = parser.parse_args(argv)
    try:
        if (args.run_dir / SUMMARY_FILE).exists():
            paths = [write_run_report(args.run_dir)]
        else:
            paths = write_sweep_report(args.run_dir)
    except FileNotFoundError as exc:
        print(f"lhe-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    for path in paths:
        print(path)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m`` or ``45s`` in seconds; a one-line error otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"--older-than: {text!r} is not a duration (allowed: a number with s, m, h or d, "
            "e.g. 30d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def cache_main(argv: list[str] | None = None) -> None:
    """``lhe-cache stats DIR`` / ``lhe-cache prune DIR --older-than 30d``: the response cache."""
    parser = argparse.ArgumentParser(prog="lhe-cache", description=cache_main.__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    stats = verbs.add_parser("stats", help="entries, size and age of a cache directory")
    stats.add_argument("cache_dir", type=Path)
    prune = verbs.add_parser("prune", help="delete entries older than a duration")
    prune.add_argument("cache_dir", type=Path)
    prune.add_argument("--older-than", type=parse_duration, required=True, help="e.g. 30d, 12h")
    args = parser.parse_args(argv)
    if not args.cache_dir.is_dir():
        print(f"lhe-cache: error: {args.cache_dir} is not a directory", file=sys.stderr)
        sys.exit(2)
    cache = ResponseCache(args.cache_dir)
    if args.verb == "prune":
        removed = cache.prune(args.older_than)
        print(f"removed {removed:,} entries older than {args.older_than / 86400:g} days")
    usage = cache.usage()
    print(f"entries    {usage.entries:,}")
    print(f"size       {usage.bytes / 1e6:,.1f} MB")
    for name, stamp in (("oldest", usage.oldest), ("newest", usage.newest)):
        when = (
            "n/a"
            if stamp is None
            else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
        )
        print(f"{name:<10} {when}")
