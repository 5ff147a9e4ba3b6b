"""Fault injection: what happens to real runs, and what lth_keras does about it.

Each fault is injected into a copy of a finished tiny experiment (synthetic
data, LeNet, 20 iterations a round, 2 trials x 3 rounds, the reinit control),
the command is rerun, and the test checks: one line on stderr naming the right
file or flag, no traceback, a non-zero exit where the run cannot go on, nothing
finished lost (damaged rounds are moved aside, never deleted), and a final
summary.csv equal to the uninterrupted run's wherever the run can go on.

Most faults run in-process (TensorFlow starts once); the binary is started as
a subprocess only where processes are the point (locks, two trials at once)
and to see its real stderr. The faults of one file or lock without a run (a
write cut short, a read-only disk, the umask, a stuck lock holder) are tested
in tests/storage/.
"""

import concurrent.futures
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from lth_keras.experiment import runner as experiment
from lth_keras.storage import locks
from lth_keras.storage.errors import CorruptResultError, ResultsWriteError
from lth_keras.storage.experiment_dir import ExperimentDir
from lth_keras.storage.files import atomic_write_npz, read_npz
from lth_keras.storage import resume
from lth_keras import main as lth_main
from tests.helpers import REPO
from tests.helpers.faults import FullDisk, hold_lock

TINY = dict(
    model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 200),
    iterations=20, eval_every=10, rounds=3, trials=2, controls=("reinit",), tensorboard=False,
    deterministic=True, checkpoint_every=0, experiment="tiny",
)
TINY_FLAGS = [
    "--model=lenet", "--dataset=synthetic", "--validation_size=100", "--synthetic_sizes=600,200",
    "--iterations=20", "--eval_every=10", "--rounds=3", "--trials=2", "--controls=reinit",
    "--tensorboard=false", "--deterministic", "--checkpoint_every=0", "--experiment=tiny",
]
ROUNDS = [(t, "ticket", r) for t in (0, 1) for r in range(3)] + [(t, "reinit", r) for t in (0, 1) for r in (1, 2)]

_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING: All log|To enable the following instructions)")


def _config(**kw):
    return experiment.ExperimentConfig(**dict(TINY, **kw))


def _run(out, **kw):
    lines = []
    exp = experiment.train_and_evaluate(_config(**kw), str(out), log=lines.append)
    return exp, lines


def _summary(root):
    return pd.read_csv(os.path.join(root, "summary.csv")).drop(columns=["wall_time_s"])


def _stderr_lines(text):
    return [l for l in text.splitlines() if l.strip() and not _TF_NOISE.match(l)]


def _retrained(lines):
    """(trial, arm, round) trained by a run, from its '== ... done' lines."""
    return sorted((int(t), a, int(r)) for t, a, r in re.findall(r"^== trial (\d+) (\w+) round (\d+) ", "\n".join(lines), re.M))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every repaired run must end equal to."""
    out = tmp_path_factory.mktemp("reference")
    exp, lines = _run(out)
    assert _retrained(lines) == sorted(ROUNDS)
    return exp.root


@pytest.fixture
def copy(reference, tmp_path):
    """A copy of the finished reference experiment, to damage."""
    out = tmp_path / "out"
    shutil.copytree(reference, out / "tiny")
    return out


def _round_dir(out, trial, arm, r):
    return os.path.join(str(out), "tiny", f"trial_{trial}", arm, f"round_{r}")


# -- damaged round files ---------------------------------------------------------------


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garbage(path):
    with open(path, "wb") as f:
        f.write(os.urandom(64))


FAULTS = {"truncated": _truncate, "deleted": os.remove, "garbage": _garbage}
ROUND_FILES = ["mask.npz", "reset_weights.npz", "trained_weights.npz", "curve.csv", "summary.json"]


@pytest.mark.parametrize("name", ROUND_FILES)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_round_file_is_moved_aside_and_retrained_with_its_dependents(copy, reference, capsys, name, fault):
    victim = os.path.join(_round_dir(copy, 0, "ticket", 1), name)
    FAULTS[fault](victim)
    damaged_bytes = open(victim, "rb").read() if os.path.exists(victim) else None
    capsys.readouterr()

    exp, lines = _run(copy)

    err = _stderr_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert os.path.join("trial_0", "ticket", "round_1", name) in err[0], err
    assert "Traceback" not in err[0]
    # The damaged round and every round built on it are retrained, nothing else.
    assert _retrained(lines) == [(0, "reinit", 1), (0, "reinit", 2), (0, "ticket", 1), (0, "ticket", 2)]
    # Nothing is deleted: the damaged round (as it was) and its dependents are kept aside.
    for arm, r in (("ticket", 1), ("ticket", 2), ("reinit", 1), ("reinit", 2)):
        aside = glob.glob(_round_dir(copy, 0, arm, r) + ".corrupt-*")
        assert len(aside) == 1, (arm, r, aside)
    kept = os.path.join(glob.glob(_round_dir(copy, 0, "ticket", 1) + ".corrupt-*")[0], name)
    if damaged_bytes is None:
        assert not os.path.exists(kept)
    else:
        assert open(kept, "rb").read() == damaged_bytes
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


def test_a_control_round_takes_nothing_else_with_it(copy, reference, capsys):
    _garbage(os.path.join(_round_dir(copy, 1, "reinit", 2), "mask.npz"))
    exp, lines = _run(copy)
    assert _retrained(lines) == [(1, "reinit", 2)]
    err = _stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and os.path.join("trial_1", "reinit", "round_2", "mask.npz") in err[0], err
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


def test_a_deleted_round_that_others_were_built_on_is_retrained_with_them(copy, reference, capsys):
    shutil.rmtree(_round_dir(copy, 0, "ticket", 1))
    exp, lines = _run(copy)
    assert _retrained(lines) == [(0, "reinit", 1), (0, "reinit", 2), (0, "ticket", 1), (0, "ticket", 2)]
    err = _stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and os.path.join("trial_0", "ticket", "round_1") in err[0], err
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


def test_unreadable_checkpoint_restarts_its_round(copy, reference, capsys):
    # An interrupted round whose checkpoint was damaged: the round restarts.
    shutil.rmtree(_round_dir(copy, 1, "ticket", 2))
    state = os.path.join(_round_dir(copy, 1, "ticket", 2), "checkpoint", "state.npz")
    os.makedirs(os.path.dirname(state))
    _garbage(state)
    exp, lines = _run(copy)
    assert (1, "ticket", 2) in _retrained(lines)
    err = _stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and "state.npz" in err[0], err
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


def test_temp_files_of_a_killed_write_are_cleaned_up(copy, reference):
    stale = [os.path.join(_round_dir(copy, 0, "ticket", 1), ".mask.npz.abc123.tmp"),
             os.path.join(str(copy), "tiny", "trial_0", "init", ".theta0.npz.x.tmp")]
    for path in stale:
        open(path, "wb").write(b"half a file")
    exp, lines = _run(copy)
    assert _retrained(lines) == []
    assert _tmp_files(exp.root) == []


# -- shared files -------------------------------------------------------------------------


def _binary_in_process(*args):
    """Runs main.main in this process; returns the SystemExit message (None: success)."""
    fv = lth_main.FLAGS
    fv.unparse_flags()
    try:
        fv(["lth_keras.main", *args])
        try:
            lth_main.main(["lth_keras.main"])
        except SystemExit as e:
            return e.code
        return None
    finally:
        fv.unparse_flags()


def _stamps(root):
    """mtime of every file of every finished round under `root`."""
    return {
        p: os.stat(p).st_mtime_ns
        for done in glob.glob(os.path.join(root, "trial_*", "*", "round_*", "summary.json"))
        for p in glob.glob(os.path.join(os.path.dirname(done), "*"))
    }


def test_invalid_config_json_stops_with_one_line_and_loses_nothing(copy):
    config = os.path.join(str(copy), "tiny", "config.json")
    with open(config, "w") as f:
        f.write('{"model": "lenet", "seed": 0,,}')
    before = _stamps(os.path.join(str(copy), "tiny"))
    with pytest.raises(CorruptResultError, match="config.json"):
        _run(copy)
    message = _binary_in_process(*TINY_FLAGS, f"--output_dir={copy}")
    assert message.startswith("error: ") and "\n" not in message
    assert config in message and "not valid JSON" in message
    assert _stamps(os.path.join(str(copy), "tiny")) == before
    with open(config, "w") as f:
        f.write("[1, 2]")
    message = _binary_in_process(*TINY_FLAGS, f"--output_dir={copy}")
    assert config in message and "JSON object" in message


def test_flags_json_is_checked_when_read_and_rewritten_by_a_rerun(copy):
    exp = ExperimentDir(os.path.join(str(copy), "tiny"))
    _garbage(exp.flags_path)
    with pytest.raises(CorruptResultError) as info:
        exp.read_flags()
    assert str(info.value).startswith(exp.flags_path + ": not valid JSON") and "\n" not in str(info.value)
    _run(copy)
    assert exp.read_flags()["iterations"] == TINY["iterations"]


def test_overwrite_never_deletes_a_trial_another_process_runs(copy):
    root = os.path.join(str(copy), "tiny")
    holder = hold_lock(os.path.join(root, ".locks", "trial_1.lock"), 60)
    try:
        before = _stamps(root)
        with pytest.raises(locks.LockHeldError, match=f"trial 1 .* pid {holder.pid}"):
            ExperimentDir(root).check_and_save_config({"other": 1}, overwrite=True)
        assert _stamps(root) == before
    finally:
        holder.kill()
        holder.wait()


def test_deleted_summary_csv_is_rebuilt_without_retraining(copy, reference, capsys):
    os.remove(os.path.join(str(copy), "tiny", "summary.csv"))
    exp, lines = _run(copy)
    assert _retrained(lines) == []
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


@pytest.mark.parametrize("fault", ["truncated", "garbage"])
def test_broken_summary_csv_is_rebuilt_from_the_rounds(copy, reference, capsys, fault):
    path = os.path.join(str(copy), "tiny", "summary.csv")
    if fault == "truncated":
        text = open(path).read()
        last = text.rstrip("\n").rsplit("\n", 1)[1]
        open(path, "w").write(text[: len(text) - len(last) // 2 - 1])  # cut inside the last row
    else:
        _garbage(path)
    capsys.readouterr()
    exp, lines = _run(copy)
    assert _retrained(lines) == []
    err = _stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and path in err[0] and "rebuilt" in err[0], err
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


# -- full or read-only disk -----------------------------------------------------------------


def _tmp_files(root):
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".tmp")]


def test_full_disk_stops_with_one_line_and_the_rerun_equals_an_uninterrupted_run(tmp_path, reference, monkeypatch):
    full = FullDisk(allowed=12)
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ResultsWriteError) as info:
        _run(tmp_path)
    message = str(info.value)
    assert "\n" not in message and info.value.path in message
    assert full.calls > full.allowed
    assert "No space left on device" in message and "resumes" in message
    assert info.value.path.startswith(str(tmp_path))
    assert _tmp_files(tmp_path) == []
    finished = _stamps(os.path.join(str(tmp_path), "tiny"))
    assert finished  # it stopped mid-run, with rounds done

    # The binary says the same in one line (SystemExit's message) and exits non-zero.
    full.calls = 0
    message = _binary_in_process(*TINY_FLAGS, f"--output_dir={tmp_path}")
    assert message is not None and message.startswith("error: cannot write ") and "\n" not in message
    assert _tmp_files(tmp_path) == []

    monkeypatch.undo()  # space freed
    exp, lines = _run(tmp_path)
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)
    for path, stamp in finished.items():  # nothing finished was redone
        assert os.stat(path).st_mtime_ns == stamp, path


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root only): a real disk that fills up mid-run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_full_disk_stops_... covers the rest")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_then_freed_space_resumes_to_the_uninterrupted_result(small_disk, reference):
    with pytest.raises(ResultsWriteError) as info:
        _run(small_disk)
    assert "No space left on device" in str(info.value) and str(small_disk) in info.value.path
    assert _tmp_files(small_disk) == []
    finished = _stamps(os.path.join(str(small_disk), "tiny"))
    assert finished  # it filled mid-run, after some rounds were done
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    exp, _ = _run(small_disk)
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)
    for path, stamp in finished.items():
        assert os.stat(path).st_mtime_ns == stamp, path


# -- θ0 ---------------------------------------------------------------------------------------


def test_theta0_is_saved_once_and_read_back(reference):
    theta0 = read_npz(os.path.join(reference, "trial_0", "init", "theta0.npz"))
    reset = read_npz(os.path.join(reference, "trial_0", "ticket", "round_0", "reset_weights.npz"))
    assert sorted(theta0) == sorted(reset)
    for key in theta0:
        np.testing.assert_array_equal(theta0[key], reset[key])
    other = read_npz(os.path.join(reference, "trial_1", "init", "theta0.npz"))
    assert not np.array_equal(theta0["00000"], other["00000"])  # a draw per trial


def test_a_saved_theta0_is_what_later_rounds_use(copy, capsys):
    # A resumed process on another TF/Keras version would draw another θ0 from
    # the seed; the saved one must win. Simulate it by changing the saved θ0.
    path = os.path.join(str(copy), "tiny", "trial_1", "init", "theta0.npz")
    arrays = read_npz(path)
    arrays["00000"] = arrays["00000"] * 0.5
    shutil.rmtree(os.path.join(str(copy), "tiny", "trial_1"))
    atomic_write_npz(path, arrays)
    exp, _ = _run(copy, trial_ids="1")
    reset = exp.read_reset_weights(1, "ticket", 0)
    np.testing.assert_array_equal(reset["00000"], arrays["00000"])


def test_a_theta0_that_does_not_fit_the_model_stops_with_one_line(copy):
    path = os.path.join(str(copy), "tiny", "trial_0", "init", "theta0.npz")
    atomic_write_npz(path, {"00000": np.zeros((3, 3), np.float32), "paths": np.array(["dense/kernel"])})
    before = _stamps(os.path.join(str(copy), "tiny"))
    with pytest.raises(resume.SnapshotMismatchError, match="theta0.npz"):
        _run(copy)
    message = _binary_in_process(*TINY_FLAGS, f"--output_dir={copy}")
    assert message.startswith("error: ") and path in message and "another architecture" in message
    assert "\n" not in message
    assert _stamps(os.path.join(str(copy), "tiny")) == before


# -- locks ------------------------------------------------------------------------------------


def test_a_trial_run_by_another_process_is_refused_naming_it(copy):
    lock = os.path.join(str(copy), "tiny", ".locks", "trial_0.lock")
    holder = hold_lock(lock, 60)
    try:
        before = _stamps(os.path.join(str(copy), "tiny"))
        began = time.time()
        with pytest.raises(locks.LockHeldError) as info:
            _run(copy, trial_ids="0")
        assert time.time() - began < 30  # at once, not after training
        message = str(info.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "--wait_for_lock" in message
        assert "trial 0" in message and "\n" not in message
        assert _stamps(os.path.join(str(copy), "tiny")) == before
        # Another trial of the same experiment is free to run meanwhile.
        _run(copy, trial_ids="1")
    finally:
        holder.kill()
        holder.wait()


def test_wait_for_lock_waits_for_the_holder(copy, reference):
    lock = os.path.join(str(copy), "tiny", ".locks", "trial_0.lock")
    holder = hold_lock(lock, 3)
    try:
        began = time.time()
        exp, lines = _run(copy, trial_ids="0", wait_for_lock=True)
        assert time.time() - began >= 2
        assert any("waiting for pid" in l for l in lines), lines
    finally:
        holder.kill()
        holder.wait()
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


def test_a_lock_left_by_a_killed_process_does_not_block(copy, reference):
    os.remove(os.path.join(str(copy), "tiny", "summary.csv"))
    shutil.rmtree(_round_dir(copy, 0, "reinit", 2))
    lock = os.path.join(str(copy), "tiny", ".locks", "trial_0.lock")
    holder = hold_lock(lock, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in open(lock).read()  # the file stays; the lock does not
    exp, lines = _run(copy)
    assert _retrained(lines) == [(0, "reinit", 2)]
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


# -- the binaries, as processes ---------------------------------------------------------------


def _binary(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _assert_one_line(proc, *needles):
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = _stderr_lines(proc.stderr)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines


@pytest.mark.slow
def test_binaries_on_two_trials_at_once_and_on_faults(reference, tmp_path):
    """As processes: two trials of one experiment at once (both finish; the
    summary has both, whoever finished last)."""
    shared = tmp_path / "shared"
    jobs = [["lth_keras.main", *TINY_FLAGS, f"--output_dir={shared}", f"--trial_ids={t}"] for t in (0, 1)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda args: _binary(*args), jobs))
    for proc in procs:
        assert proc.returncode == 0, _stderr_lines(proc.stderr)
    pd.testing.assert_frame_equal(_summary(shared / "tiny"), _summary(reference), check_exact=True)


@pytest.mark.slow
def test_a_second_binary_on_a_running_trial_is_refused_and_a_killed_ones_lock_is_free(reference, tmp_path):
    """Process A runs trial 0 and is frozen (SIGSTOP) while it holds the
    trial; process B on the same trial is refused at once naming A; A is then
    SIGKILLed, and a rerun finishes the experiment as if nothing happened."""
    out = tmp_path / "out"
    args = ["lth_keras.main", *TINY_FLAGS, f"--output_dir={out}", "--trial_ids=0"]
    lock = out / "tiny" / ".locks" / "trial_0.lock"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    a = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while locks.holder(str(lock)).get("pid") != a.pid:
            assert a.poll() is None and time.time() < deadline, "A never held trial 0"
            time.sleep(0.02)
        a.send_signal(signal.SIGSTOP)
        # Frozen outside its short lock on the shared files, which B needs.
        shared = locks.FileLock(str(out / "tiny" / ".locks" / "experiment.lock"))
        while True:
            try:
                shared.acquire().release()
                break
            except locks.LockHeldError:
                a.send_signal(signal.SIGCONT)
                time.sleep(0.01)
                a.send_signal(signal.SIGSTOP)
        b = _binary(*args)
        _assert_one_line(b, "trial 0", f"pid {a.pid} on {socket.gethostname()}", "--wait_for_lock")
    finally:
        a.kill()
        a.wait()
    assert a.returncode == -signal.SIGKILL
    assert locks.holder(str(lock)).get("pid") == a.pid  # its lock file stays; its lock does not
    exp, _ = _run(out)
    pd.testing.assert_frame_equal(_summary(exp.root), _summary(reference), check_exact=True)


# -- the reading binaries on empty, partial and damaged experiments -----------------------------


def _exit_message(module, flag_values, argv):
    """Runs `module.main` on parsed `argv`; returns its SystemExit message."""
    flag_values.unparse_flags()
    try:
        flag_values(argv)
        with pytest.raises(SystemExit) as info:
            module.main(argv[:1])
        return info.value.code
    finally:
        flag_values.unparse_flags()


@pytest.fixture
def damaged_dirs(reference, tmp_path):
    """name -> experiment directory: empty, partial (one unfinished round), and damaged copies."""
    dirs = {"empty": tmp_path / "empty", "partial": tmp_path / "partial"}
    dirs["empty"].mkdir()
    shutil.copy(os.path.join(reference, "config.json"), tmp_path / "config.json")
    state = dirs["partial"] / "trial_0" / "ticket" / "round_0" / "checkpoint" / "state.npz"
    state.parent.mkdir(parents=True)
    atomic_write_npz(str(state), {"a": np.zeros(2)})
    shutil.copy(tmp_path / "config.json", dirs["partial"] / "config.json")
    for name, rel, fault in [
        ("summary_csv", "summary.csv", _garbage),
        ("mask", os.path.join("trial_0", "ticket", "round_1", "mask.npz"), _truncate),
        ("config", "config.json", _garbage),
        ("theta0", os.path.join("trial_0", "ticket", "round_0", "reset_weights.npz"), _truncate),
        ("curve", os.path.join("trial_0", "ticket", "round_1", "curve.csv"), _garbage),
    ]:
        dirs[name] = tmp_path / name
        shutil.copytree(reference, dirs[name])
        fault(str(dirs[name] / rel))
        dirs[name + "_file"] = str(dirs[name] / rel)
    return dirs


def _assert_names(message, *needles):
    assert message is not None and message.startswith("error: ") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_figures_export_and_baseline_on_bad_directories(damaged_dirs, tmp_path):
    from lth_keras import export, figures
    from lth_keras.baselines import tfmot

    d = damaged_dirs
    out = str(tmp_path / "plots")

    def fig(path):
        return _exit_message(figures, figures.FLAGS, ["figures", f"--results={path}", f"--out={out}", "--formats=png", "--pms=80", "--reinit_pms=80"])

    def exp(path, round_=1):
        return _exit_message(export, export.FLAGS, [
            "export", f"--results={path}", f"--round={round_}", "--format=keras", f"--out={tmp_path / 'x.keras'}"])

    def base(path):
        return _exit_message(tfmot, tfmot.FLAGS, ["tfmot", f"--results={path}"])

    _assert_names(fig(d["empty"]), str(d["empty"]))
    _assert_names(fig(d["partial"]), str(d["partial"]), "no finished round")
    _assert_names(fig(d["summary_csv"]), d["summary_csv_file"])
    _assert_names(fig(d["curve"]), d["curve_file"])
    _assert_names(exp(d["empty"]), str(d["empty"]), "config.json")
    _assert_names(exp(d["partial"], 0), str(d["partial"]), "round 0 not found")
    _assert_names(exp(d["mask"]), d["mask_file"])
    _assert_names(exp(d["config"]), d["config_file"], "not valid JSON")
    _assert_names(base(d["empty"]), str(d["empty"]), "config.json")
    _assert_names(base(d["partial"]), str(d["partial"]), "no finished ticket round")
    _assert_names(base(d["config"]), d["config_file"], "not valid JSON")
    _assert_names(base(d["theta0"]), d["theta0_file"])
    assert not os.path.exists(out) or not os.listdir(out)
