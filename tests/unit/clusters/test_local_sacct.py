import pytest

from clusters.local_sacct import job_lines, main

SCONTROL = "\n".join(
    [
        "JobId=7 JobName=cli JobState=COMPLETED Reason=None NodeList=localnode BatchHost=x",
        "JobId=9 ArrayJobId=8 ArrayTaskId=0 JobName=cli JobState=FAILED NodeList=localnode",
        "JobId=8 ArrayJobId=8 ArrayTaskId=1-3%2 JobName=cli JobState=PENDING NodeList=(null)",
        "",
    ]
)


def test_scontrol_records_become_sacct_lines_that_submitit_reads_back():
    lines = job_lines(SCONTROL)
    assert lines == ["7|COMPLETED|localnode", "8_0|FAILED|localnode", "8_[1-3]|PENDING|"]

    submitit_slurm = pytest.importorskip("submitit.slurm.slurm")
    info = submitit_slurm.SlurmInfoWatcher().read_info("\n".join(["JobID|State|NodeList", *lines]))
    states = {job: fields["State"] for job, fields in info.items()}
    assert states == {
        "7": "COMPLETED",
        "8_0": "FAILED",
        "8_1": "PENDING",
        "8_2": "PENDING",
        "8_3": "PENDING",
    }


def test_any_other_query_is_refused_rather_than_answered_wrong(capsys):
    assert main(["-j", "7"]) == 1
    assert main(["-o", "JobID,State", "--parsable2", "-j", "7"]) == 1
    assert "only answers" in capsys.readouterr().err
