"""Tests of `amlcyto search` through the command line (``amlcyto.cli.search``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from cli_helpers import interrupt_after_first_epoch, invoke, ok, one_line_error
from training_helpers import _StopAfter
from typer.testing import CliRunner

from amlcyto.cli.main import app
from amlcyto.training.fit import work_dir

# a search of tiny trials: 2 epochs of a small CNN at 16 px on the CPU
TINY = ["--image-size", "16", "--epochs", "2", "--accelerator", "cpu", "--precision", "32-true"]
TINY += ["--no-channels-last", "--no-prune"]


def test_a_failing_search_leaves_nothing_behind(tiny_split: Path, tmp_path: Path):
    out = tmp_path / "search"
    result = invoke(
        "search", tiny_split, "--out", out, "--task", "binary", "--positive", "RUNX1_RUNX1T1"
    )
    one_line_error(result, "RUNX1_RUNX1T1")
    assert not out.exists()


def test_search_help_lists_the_sharing_options():
    result = CliRunner().invoke(app, ["search", "--help"])
    assert result.exit_code == 0
    for option in ("--storage", "--study-name", "--trials", "--positive", "--force"):
        assert option in result.output


def test_search_command_reports_pruned_failed_and_the_final_score(tiny_split, tmp_path, tiny_space):
    out = tmp_path / "s"
    args = ["search", str(tiny_split), "--out", str(out), "--space", str(tiny_space)]
    args += ["--image-size", "16", "--epochs", "1", "--trials", "2", "--final"]
    result = CliRunner().invoke(app, args, env={"AMLCYTO_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "trial 0: validation loss" in result.stderr and "widths [" in result.stderr
    assert "(0 pruned, 0 failed, 0 interrupted)" in result.stderr
    assert "final: the best settings trained on train+val score accuracy" in result.stderr
    assert (out / "best.yaml").is_file() and (out / "final" / "model.safetensors").is_file()


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'search.db'}")


def test_a_search_on_other_data_into_the_same_out_is_refused(
    tiny_split, new_data, tmp_path, tiny_space
):
    out = tmp_path / "s"
    ok(invoke("search", tiny_split, "--out", out, "--space", tiny_space, *TINY, "--trials", "1"))
    trials = (out / "trials.csv").read_text()
    # other classes (blast, promyelocyte), the same settings and study name
    result = invoke("search", new_data, "--out", out, "--space", tiny_space, *TINY, "--trials", "2")
    one_line_error(result, "other data", str(tiny_split), str(new_data), "--force")
    assert (out / "trials.csv").read_text() == trials and len(_study(out).trials) == 1


def test_ctrl_c_in_a_trial_is_one_line_and_the_same_command_runs_that_trial_again(
    tiny_split, tmp_path, tiny_space, monkeypatch
):
    import amlcyto.training.search as search_module

    real_train, threads, before = search_module.train, [], set(threading.enumerate())

    def ctrl_c_in_the_second_trial(*args, **kwargs):
        threads.extend(t for t in threading.enumerate() if not t.daemon and t not in before)
        if args[1].name == "trial-1":
            kwargs["callbacks"] = [*kwargs["callbacks"], _StopAfter(0)]  # after its first epoch
        return real_train(*args, **kwargs)

    monkeypatch.setattr(search_module, "train", ctrl_c_in_the_second_trial)
    out = tmp_path / "s"
    args = ["search", tiny_split, "--out", out, "--space", tiny_space, *TINY, "--trials", "2"]
    result = invoke(*args)
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()  # trial 0's line, then one error line
    assert len(lines) == 2 and lines[0].startswith("trial 0: validation loss"), result.stderr
    assert lines[1].startswith("error: ") and "search interrupted" in lines[1]
    assert "--resume" not in lines[1]  # search has none: the same command goes on
    assert threads == []  # no thread (Optuna's heartbeat) to outlive Ctrl-C and hang the exit
    assert not (out / "trial-1").exists() and not work_dir(out / "trial-1").exists()
    stopped = _study(out).trials[1]
    assert stopped.state.name == "FAIL" and stopped.user_attrs["interrupted"] is True

    monkeypatch.setattr(search_module, "train", real_train)
    result = invoke(*args)  # the same command
    ok(result)
    assert "(0 pruned, 0 failed, 1 interrupted)" in result.stderr
    trials = _study(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == stopped.params  # the stopped trial's settings, run again
    best = json.loads((out / "best.json").read_text())
    assert (best["failed"], best["interrupted"]) == (0, 1)


@pytest.mark.slow
def test_sigint_stops_search_in_one_line_and_the_same_command_goes_on(
    tiny_split, tmp_path, tiny_space
):
    out = tmp_path / "s"
    command = [sys.executable, "-m", "amlcyto", "search", str(tiny_split), "--out", str(out)]
    command += ["--space", str(tiny_space), *TINY, "--trials", "2", "--patience", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command += ["--epochs", "12"]  # the last --epochs wins: a trial long enough to stop in
    state = work_dir(out / "trial-0") / "checkpoint" / "state.json"
    _, line = interrupt_after_first_epoch(command, env, state)
    assert "search interrupted" in line
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state.name for t in _study(out).trials] == ["FAIL", "COMPLETE", "COMPLETE"]
