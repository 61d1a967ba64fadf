"""``fuzzkit status`` and the progress display, from stats series written by the tests (every
time in them fixed) and from a real hypothesis campaign, running and stopped."""

from __future__ import annotations

import fcntl
import io
import json
import signal
from pathlib import Path

import pytest
from series_helpers import HYPOTHESIS, SERIES, T0, TARGET, TITLE, fuzzkit, write_series

from fuzzkit.cli import main
from fuzzkit.progress import Progress
from fuzzkit.status import read_campaign, read_series, status_json


def test_status_describes_each_worker_from_its_series(tmp_path: Path) -> None:
    write_series(tmp_path)
    doc = status_json(read_campaign(tmp_path), now=T0 + 200)
    assert doc["running"] is False
    [target] = doc["targets"]
    w0, w1 = target["worker_status"]
    assert (w0["runs"], w0["reason"], w0["uptime"]) == (2, "done", 12.0), "the resumed run, not the first"
    assert (w0["execs"], w0["exec_per_second"], w0["corpus"], w0["coverage"]) == (800, 80, 10, 45)
    assert (w0["bugs"], w0["new_bugs"]) == (1, 0), "met again this run, new in the first"
    assert w0["since_new_coverage"] == 180.0, "features last grew at t=20; the resume only caught up"
    assert w0["since_new_bug"] == 185.0
    assert w1["stopped"] is None and w1["uptime"] == 10.0, "a killed run ends at its last line"
    assert (w1["bugs"], w1["new_bugs"], w1["since_new_bug"]) == (1, 1, 192.0)
    assert (target["execs"], target["exec_per_second"], target["coverage"]) == (1400, 140, 45)
    assert (target["bugs"], target["new_bugs"], target["since_new_coverage"]) == (2, 1, 180.0)


def test_a_held_slot_lock_is_a_running_worker_and_reading_takes_no_slot(tmp_path: Path) -> None:
    folder = write_series(tmp_path)
    with open(folder / "w1.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        w0, w1 = read_campaign(tmp_path)
        assert not w0.running and w1.running
        assert status_json([w0, w1], now=T0 + 20)["targets"][0]["worker_status"][1]["uptime"] == 20.0
        fcntl.flock(held, fcntl.LOCK_UN)
        assert not read_campaign(tmp_path)[1].running
    assert not (folder / "w0.lock").exists(), "status never creates slot locks"


def test_status_json_and_table_from_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_series(tmp_path)
    assert main(["status", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [w["execs"] for w in doc["targets"][0]["worker_status"]] == [800, 600]
    assert main(["status", str(tmp_path), "--watch"]) == 0, "--watch ends when nothing runs"
    out = capsys.readouterr().out
    assert f"{TARGET}/w0" in out and "stopped (done)" in out and "1 (1 new)" in out


def test_a_line_cut_short_at_the_end_is_skipped_and_a_bad_line_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_series(tmp_path)
    path = folder / "w1.jsonl"
    with open(path, "a") as f:
        f.write('{"target": "x86-fixed-2cpu", "worker": 1, "ti')
    assert read_campaign(tmp_path)[1].stats["execs"] == 600
    path.write_text(path.read_text().replace('"kind": "finding"', '"kind": finding', 1))
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: line 3: not JSON" in err[0]
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert "no campaign has run here" in capsys.readouterr().err


def test_plain_progress_prints_events_and_one_line_per_interval() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, live=False)
    for event in SERIES[0][:7]:
        progress(event)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"   {TARGET}/w0: started (pid 10, seed 1)"
    assert lines[1] == f"   {TARGET}/w0: 10s, 1,000 executions (100/s), cov 44, corpus 9, bugs 0"
    assert lines[2] == f"   {TARGET}/w0: found after 150 executions: {TITLE} [new bug]"
    assert lines[3] == f"   {TARGET}/w0: 20s, 2,000 executions (100/s), cov 45, corpus 10, bugs 1"
    assert lines[4] == f"   {TARGET}/w0: 30s, 3,000 executions (100/s), cov 45, corpus 10, bugs 1"
    assert lines[5] == f"   {TARGET}/w0: stopped (interrupted, exit 0)" and len(lines) == 6


def test_live_progress_draws_a_status_block() -> None:
    out = io.StringIO()
    progress = Progress(stream=out, live=True, width=160)
    for event in SERIES[1]:
        progress(event)
    progress.close()
    text = out.getvalue()
    assert "┏" in text and f"{TARGET}/w1" in text and "found after 80 executions" in text
    assert f"│ {TARGET}/w1 │ running" in text


def test_a_hypothesis_campaign_is_running_then_stopped(tmp_path: Path) -> None:
    """Stopped by SIGINT once the worker found its bug (so it is past start-up and stops
    between two examples): no wall-clock wait."""
    proc = fuzzkit(tmp_path, *HYPOTHESIS, "--time", "300")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "[new bug]" in line:
            break
    try:
        running = status_json(read_campaign(tmp_path / "reports"))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err
    [target] = running["targets"]
    assert running["running"] and target["running"] == 1
    assert target["worker_status"][0]["engine"] == "hypothesis"
    assert (target["bugs"], target["new_bugs"]) == (1, 1)
    stopped = status_json(read_campaign(tmp_path / "reports"))
    [w0] = stopped["targets"][0]["worker_status"]
    assert not stopped["running"] and w0["reason"] == "interrupted" and w0["execs"] is not None
    assert "campaign page: reports/campaign.html" in out


def test_libfuzzer_coverage_lines_reach_the_series_at_the_next_flush(tmp_path: Path) -> None:
    """libFuzzer's NEW lines are ``coverage`` events; on a plateau no ``stats`` line may follow
    for hours, so the supervisor writes the latest figures itself when it flushes."""
    from fuzzkit.engines.atheris_engine import AtherisEngine
    from fuzzkit.engines.campaign import Target
    from fuzzkit.engines.supervisor import Supervisor
    from fuzzkit.engines.worker import Job

    job = Job("atheris", Target("x86", "fixed", 2), 0, 1, 10, None, tmp_path, tmp_path / "corpus")
    supervisor = Supervisor(AtherisEngine(), None, [job], parallel=1)  # type: ignore[arg-type]
    w = supervisor.pending.pop()
    w.folder.mkdir(parents=True)
    supervisor.running.append(w)
    engine = AtherisEngine()
    for line in (
        "#4096\tpulse  cov: 58 ft: 79 corp: 29/1Kb exec/s: 2048 rss: 90Mb",
        "#4200\tNEW    cov: 60 ft: 85 corp: 30/1Kb lim: 4 exec/s: 2100 rss: 90Mb L: 4/4 MS: 1 CopyPart-",
    ):
        supervisor._handle(w, engine.parse(line))
    supervisor._flush()
    assert [(e["kind"], e["execs"]) for e in read_series(w.series(".jsonl"))] == [("stats", 4096)]
    w.next_series = 0.0  # the throttle interval has passed
    supervisor._flush()
    [_, last] = read_series(w.series(".jsonl"))
    assert (last["kind"], last["execs"], last["features"], last["bugs"]) == ("stats", 4200, 85, 0)
    assert (last["target"], last["worker"]) == ("x86-fixed-2cpu", 0) and last["time"] > 0
    supervisor._flush()
    assert len(read_series(w.series(".jsonl"))) == 2, "nothing new: no line"
