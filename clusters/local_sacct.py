"""``sacct`` for the local cluster, which has no accounting database: job states from slurmctld.

submitit learns that a job ended from its result file, or else from ``sacct``. A job that
dies before writing one (a config error, a crash at import) would leave the launcher
waiting forever on a cluster whose ``sacct`` only answers "accounting storage is disabled".
Running ``slurmdbd`` and a MySQL server for one test machine is far more than the one query
submitit makes, so :mod:`clusters.local_slurm` puts this script first on ``PATH`` as
``sacct``. It answers exactly that query, ``sacct -o JobID,State,NodeList --parsable2 -j ID
...``, from ``scontrol show job`` (which knows finished jobs for ``MinJobAge`` seconds), in
sacct's format; any other use fails with a message saying so. Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys

FIELDS = "JobID,State,NodeList"


def job_lines(scontrol_output: str) -> list[str]:
    """``JobID|State|NodeList`` lines for ``scontrol show job -o`` output (one job a line).

    An array task is named ``ARRAY_TASK`` as sacct names it; pending tasks that SLURM still
    holds as one record (``ArrayTaskId=2-5``) become ``ARRAY_[2-5]``, which submitit expands.
    """
    lines = []
    for record in scontrol_output.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", record))
        if "JobId" not in fields:
            continue
        job = fields["JobId"]
        if "ArrayJobId" in fields:
            task = fields["ArrayTaskId"].split("%")[0]
            job = f"{fields['ArrayJobId']}_" + (f"[{task}]" if "-" in task or "," in task else task)
        nodes = fields.get("NodeList", "")
        lines.append(
            f"{job}|{fields.get('JobState', 'UNKNOWN')}|{'' if nodes == '(null)' else nodes}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Answer submitit's query; return sacct's exit code."""
    args = sys.argv[1:] if argv is None else argv
    jobs = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-j"]
    expected = ["-o", FIELDS, "--parsable2", *(x for job in jobs for x in ("-j", job))]
    if not jobs or args != expected:
        print(
            f"sacct (local cluster stand-in) only answers: sacct -o {FIELDS} --parsable2 -j ID",
            file=sys.stderr,
        )
        return 1
    print(FIELDS.replace(",", "|"))
    for job in jobs:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:  # else unknown to the controller (yet, or any more)
            for line in job_lines(shown.stdout):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
