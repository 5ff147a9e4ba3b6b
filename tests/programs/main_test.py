"""Tests for the experiment binary, `python -m lth_keras.main`, and the
flagfiles in flags/: parsing, bad input, refusing a changed config, resuming
after a kill.

Every test that starts the binary is a subprocess (TensorFlow's import alone
takes several seconds) and is marked slow, except where noted. The
quickstart and the real-data run are in tests/e2e/quickstart_test.py.
"""

import concurrent.futures
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from absl import flags

from lth_keras.experiment import runner as experiment
from lth_keras import main as lth_main
from tests.helpers import REPO
from tests.helpers.runs import own_lines, run_main

FLAGS_DIR = os.path.join(REPO, "flags")


# A tiny run on synthetic data (about a second of training per round).
TINY = ["--dataset=synthetic", "--validation_size=200", "--iterations=100", "--eval_every=50", "--tensorboard=false"]



def assert_clean_error(proc, flag):
    """Non-zero exit, one line on stderr naming `flag`, no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = own_lines(proc.stderr)
    assert len(lines) == 1, lines
    assert flag in lines[0], lines


# -- flagfiles --------------------------------------------------------------------

FLAGFILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FLAGS_DIR, "*.flags")))


def parse_flagfile(name, *extra):
    fv = flags.FlagValues()
    lth_main.define_flags(flag_values=fv)
    fv(["lth_keras.main", f"--flagfile={os.path.join(FLAGS_DIR, name)}", *extra])
    return lth_main.config_from_flags(flag_values=fv)


def _conv_net(blocks):
    """(kernel sizes by kind) for the paper's Conv-2/4/6 at 32x32x3."""
    convs, cin, side = [], 3, 32
    for width in blocks:
        convs += [9 * cin * width, 9 * width * width]
        cin, side = width, side // 2
    return {"conv": convs, "dense": [side * side * cin * 256, 256 * 256], "output": [256 * 10]}


# Paper table (Frankle & Carbin 2019) and layer sizes computed from the
# architectures it describes.
PAPER = {
    "lenet": dict(dataset="mnist", iterations=50_000, batch_size=60, optimizer="adam", learning_rate=1.2e-3,
                  pruning="layerwise", prune_rate_dense=0.2, prune_rate_output=0.1,
                  sizes={"dense": [784 * 300, 300 * 100], "output": [100 * 10], "conv": []}),
    "conv2": dict(dataset="cifar10", iterations=20_000, batch_size=60, optimizer="adam", learning_rate=2e-4,
                  pruning="layerwise", prune_rate_conv=0.1, prune_rate_dense=0.2, prune_rate_output=0.1,
                  sizes=_conv_net([64])),
    "conv4": dict(dataset="cifar10", iterations=25_000, batch_size=60, optimizer="adam", learning_rate=3e-4,
                  pruning="layerwise", prune_rate_conv=0.1, prune_rate_dense=0.2, prune_rate_output=0.1,
                  sizes=_conv_net([64, 128])),
    "conv6": dict(dataset="cifar10", iterations=30_000, batch_size=60, optimizer="adam", learning_rate=3e-4,
                  pruning="layerwise", prune_rate_conv=0.15, prune_rate_dense=0.2, prune_rate_output=0.1,
                  sizes=_conv_net([64, 128, 256])),
    "vgg19": dict(dataset="cifar10", iterations=112_000, batch_size=64, optimizer="sgd", momentum=0.9,
                  weight_decay=1e-4, pruning="global", prune_rate_conv=0.2, augment=True,
                  lr_boundaries=(56_000, 84_000)),
    "resnet18": dict(dataset="cifar10", iterations=30_000, batch_size=128, optimizer="sgd", momentum=0.9,
                     weight_decay=1e-4, pruning="global", prune_rate_conv=0.2, augment=True,
                     lr_boundaries=(20_000, 25_000)),
}


def _vgg19_sizes():
    widths = [64, 64, 128, 128] + [256] * 4 + [512] * 8
    convs, cin = [], 3
    for w in widths:
        convs.append(9 * cin * w)
        cin = w
    return {"conv": convs, "excluded": [512 * 10]}


def _resnet18_sizes():
    convs, excluded = [9 * 3 * 16], [64 * 10]
    cin = 16
    for width in (16, 32, 64):
        for block in range(3):
            convs += [9 * cin * width, 9 * width * width]
            if cin != width:
                excluded.append(cin * width)  # 1x1 shortcut, not pruned
            cin = width
    return {"conv": convs, "excluded": excluded}


def _round_half_up(x):
    return math.floor(x + 0.5)


def pm_after(model, config, k):
    """P_m (percent) after k pruning rounds, computed from the layer sizes."""
    if model in ("vgg19", "resnet18"):
        sizes = _vgg19_sizes() if model == "vgg19" else _resnet18_sizes()
        alive = sum(sizes["conv"])
        for _ in range(k):
            alive -= _round_half_up(config.prune_rate_conv * alive)
        excluded = sum(sizes["excluded"])
        return 100.0 * (alive + excluded) / (sum(sizes["conv"]) + excluded)
    sizes = PAPER[model]["sizes"]
    rates = {"conv": config.prune_rate_conv, "dense": config.prune_rate_dense, "output": config.prune_rate_output}
    alive_total, total = 0, 0
    for kind, layer_sizes in sizes.items():
        for size in layer_sizes:
            alive = size
            for _ in range(k):
                alive -= _round_half_up(rates[kind] * alive)
            alive_total, total = alive_total + alive, total + size
    return 100.0 * alive_total / total


def test_every_paper_configuration_has_a_flagfile():
    expected = {"quickstart.flags", "lenet.flags", "conv2.flags", "conv4.flags", "conv6.flags", "vgg19.flags",
                "resnet18.flags", "conv2_dropout.flags", "conv4_dropout.flags", "conv6_dropout.flags",
                "vgg19_rewind.flags", "resnet18_rewind.flags"}
    assert expected <= set(FLAGFILES)


@pytest.mark.parametrize("name", FLAGFILES)
def test_flagfile_parses_and_resolves(name):
    with open(os.path.join(FLAGS_DIR, name)) as f:
        text = f.read().splitlines()
    assert text[0].startswith("# ")  # says what it reproduces
    for line in text:
        assert not line.strip() or line.startswith("#") or re.match(r"^--\w+(=.*)?$", line), line
    config = parse_flagfile(name).resolve()  # a bad value raises ConfigError
    assert config.experiment and config.experiment not in models_names()


def models_names():
    from lth_keras import models

    return set(models.MODELS)


def test_flagfile_experiment_names_are_distinct():
    names = [parse_flagfile(n).experiment for n in FLAGFILES]
    assert len(set(names)) == len(names), names


def test_a_typo_in_a_flagfile_fails(tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("# typo\n--prune_rate_dens=0.2\n")
    fv = flags.FlagValues()
    lth_main.define_flags(flag_values=fv)
    with pytest.raises(flags.Error):
        fv(["lth_keras.main", f"--flagfile={bad}"])


PAPER_FILES = [n for n in FLAGFILES if n != "quickstart.flags"]


@pytest.mark.parametrize("name", PAPER_FILES)
def test_flagfile_has_the_papers_values(name):
    config = parse_flagfile(name).resolve()
    base = name.split(".")[0].split("_")[0]
    variant = name.split(".")[0][len(base):].lstrip("_")
    paper = dict(PAPER[base])
    paper.pop("sizes", None)
    assert config.model == base
    if variant == "dropout":
        assert config.dropout == 0.5
        paper["iterations"] *= 3
    else:
        assert config.dropout == 0.0
    for key, value in paper.items():
        got = getattr(config, key)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key
    assert config.trials == 5
    assert set(config.controls) == {"reinit", "random_mask"}
    assert config.validation_size == 5000 and config.eval_every == 100
    if base == "vgg19":
        assert config.global_exclude == ("output",)
    if base == "resnet18":
        assert set(config.global_exclude) == {"output", "*_shortcut"}
    if base in ("vgg19", "resnet18"):
        if variant == "rewind":
            assert config.rewind_iteration > 0 and config.warmup_iterations == 0
            assert config.learning_rate == pytest.approx(0.1)
        else:
            assert config.rewind_iteration == 0
            warmup = {"vgg19": (10_000, 0.1), "resnet18": (20_000, 0.03)}[base]
            assert (config.warmup_iterations, config.learning_rate) == (warmup[0], pytest.approx(warmup[1]))
    else:
        assert config.rewind_iteration == 0 and config.warmup_iterations == 0
        # The paper augments only ResNet-18/VGG-19 (flip + pad/crop).
        assert config.augment is False
    last = pm_after(base, config, config.rounds - 1)
    if base == "lenet":
        assert round(last, 1) == 1.9  # the paper's smallest LeNet ticket
    else:
        # The rounds reach the first P_m below 2% (the paper's sparsest level).
        assert last < 2.0 <= pm_after(base, config, config.rounds - 2)


def test_quickstart_flagfile():
    config = parse_flagfile("quickstart.flags").resolve()
    assert (config.model, config.dataset, config.experiment) == ("lenet", "fashion_mnist", "quickstart")
    assert (config.iterations, config.rounds, config.eval_every) == (2000, 4, 100)
    assert config.controls == ("reinit",) and config.output_dir == "runs"
    # Command-line flags after the flagfile win (the README overrides output_dir).
    assert parse_flagfile("quickstart.flags", "--output_dir=/tmp/elsewhere").output_dir == "/tmp/elsewhere"


# -- bad input through the binary -----------------------------------------------------

BAD_INPUT = {
    "unknown_model": (["--model=lenet5"], "--model"),
    "unknown_dataset": (["--dataset=imagenet"], "--dataset"),
    "rate_dense_1": (["--prune_rate_dense=1.0"], "--prune_rate_dense"),
    "rate_dense_negative": (["--prune_rate_dense=-0.1"], "--prune_rate_dense"),
    "rate_conv": (["--prune_rate_conv=1.5"], "--prune_rate_conv"),
    "rate_output": (["--prune_rate_output=-0.5"], "--prune_rate_output"),
    "iterations_zero": (["--iterations=0"], "--iterations"),
    "iterations_negative": (["--iterations=-100"], "--iterations"),
    "rounds_zero": (["--rounds=0"], "--rounds"),
    "rounds_negative": (["--rounds=-1"], "--rounds"),
    "eval_every": (["--eval_every=101"], "--eval_every"),
    "validation_size_zero": (["--validation_size=0"], "--validation_size"),
    "synthetic_sizes": (["--synthetic_sizes=1200,x"], "--synthetic_sizes"),
    "missing_data": (["--dataset=mnist", "--data_dir={empty}"], "--data_dir"),
    "output_dir_under_file": (["--output_dir={file}/runs"], "--output_dir"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Runs every BAD_INPUT case (two at a time: each is mostly TF's import)."""
    base = tmp_path_factory.mktemp("bad")
    empty = base / "empty_data"
    empty.mkdir()
    regular_file = base / "a_file"
    regular_file.write_text("not a directory\n")

    def one(case):
        args, _ = BAD_INPUT[case]
        out = base / case
        args = [a.format(empty=empty, file=regular_file) for a in args]
        if not any(a.startswith("--output_dir") for a in args):
            args.append(f"--output_dir={out}")
        return case, out, run_main(*TINY, *args, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return {case: (out, proc) for case, out, proc in pool.map(one, BAD_INPUT)}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_cleanly(bad_runs, case):
    out, proc = bad_runs[case]
    # Nothing is left behind that could block (or confuse) a corrected rerun.
    assert not out.exists() or list(out.iterdir()) == [], list(out.rglob("*"))
    assert_clean_error(proc, BAD_INPUT[case][1])


@pytest.mark.slow
def test_missing_data_fails_without_traceback_and_names_the_flag(bad_runs):
    out, proc = bad_runs["missing_data"]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--data_dir" in own_lines(proc.stderr)[0]
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.slow
def test_corrected_rerun_after_a_bad_rate_works(tmp_path):
    bad = run_main(*TINY, "--rounds=2", "--prune_rate_dense=1.0", f"--output_dir={tmp_path}")
    assert_clean_error(bad, "--prune_rate_dense")
    good = run_main(*TINY, "--rounds=2", "--prune_rate_dense=0.2", f"--output_dir={tmp_path}")
    assert good.returncode == 0, good.stderr[-3000:]
    df = pd.read_csv(tmp_path / "lenet" / "summary.csv")
    assert sorted(df["round"]) == [0, 1]


@pytest.mark.slow
def test_batch_size_larger_than_the_training_set_leaves_nothing_behind(tmp_path):
    bad = run_main(*TINY, "--batch_size=5000", f"--output_dir={tmp_path}")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--batch_size" in own_lines(bad.stderr)[0]
    good = run_main(*TINY, "--rounds=1", f"--output_dir={tmp_path}")
    assert good.returncode == 0, own_lines(good.stderr)


# -- changing a defining flag -----------------------------------------------------------


def _tiny_config(**kw):
    base = dict(
        model="lenet", dataset="synthetic", validation_size=200, iterations=100, eval_every=50,
        rounds=1, tensorboard=False,
    )
    base.update(kw)
    return experiment.ExperimentConfig(**base)


@pytest.mark.slow
def test_changing_a_defining_flag_is_refused_and_overwrite_accepts_it(tmp_path):
    exp_dir = experiment.train_and_evaluate(_tiny_config(), str(tmp_path), log=lambda _: None)
    summary = os.path.join(exp_dir.root, "trial_0", "ticket", "round_0", "summary.json")
    stamp = os.stat(summary).st_mtime_ns
    args = [*TINY, "--rounds=1", f"--output_dir={tmp_path}"]

    refused = run_main(*args, "--learning_rate=0.002")
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "learning_rate" in "\n".join(own_lines(refused.stderr))
    assert os.stat(summary).st_mtime_ns == stamp  # the old results are untouched

    accepted = run_main(*args, "--learning_rate=0.002", "--overwrite")
    assert accepted.returncode == 0, own_lines(accepted.stderr)
    with open(os.path.join(exp_dir.root, "config.json")) as f:
        assert json.load(f)["learning_rate"] == pytest.approx(0.002)
    with open(summary) as f:
        assert json.load(f)["round"] == 0  # retrained under the new config


@pytest.mark.slow
def test_changing_a_defining_flag_gives_a_one_line_error_naming_the_flag(tmp_path):
    experiment.train_and_evaluate(_tiny_config(), str(tmp_path), log=lambda _: None)
    refused = run_main(*TINY, "--rounds=1", f"--output_dir={tmp_path}", "--learning_rate=0.002")
    assert_clean_error(refused, "--learning_rate")


def test_changing_a_defining_flag_in_process_raises_before_training(tmp_path):
    from lth_keras.storage.errors import ConfigMismatchError

    experiment.train_and_evaluate(_tiny_config(), str(tmp_path), log=lambda _: None)
    lines = []
    with pytest.raises(ConfigMismatchError, match="learning_rate"):
        experiment.train_and_evaluate(_tiny_config(learning_rate=0.002), str(tmp_path), log=lines.append)
    assert lines == []
    # A non-defining flag (rounds) may change: that extends the experiment.
    experiment.train_and_evaluate(_tiny_config(rounds=2), str(tmp_path), log=lines.append)
    assert any("round 1" in l and "done" in l for l in lines)


# -- resume after a kill --------------------------------------------------------------------

RESUME_ARGS = [
    "--dataset=synthetic", "--validation_size=200", "--iterations=1000", "--eval_every=100",
    "--checkpoint_every=100", "--rounds=3", "--controls=reinit", "--deterministic", "--tensorboard=false",
]


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "lth_keras.main", *RESUME_ARGS]
    # The uninterrupted reference runs alongside.
    straight = subprocess.Popen(
        cmd + [f"--output_dir={straight_dir}"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    log = open(tmp_path / "killed.log", "w")
    victim = subprocess.Popen(
        cmd + [f"--output_dir={killed_dir}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    exp = killed_dir / "lenet"
    state = exp / "trial_0" / "ticket" / "round_2" / "checkpoint" / "state.npz"
    deadline = time.time() + 400
    try:
        while not state.exists():
            assert victim.poll() is None, "the run finished before it could be killed"
            assert time.time() < deadline, "no round-2 checkpoint appeared"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
        log.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (exp / "trial_0" / "ticket" / "round_2" / "summary.json").exists()
    finished = {
        p: os.stat(p).st_mtime_ns for p in exp.glob("trial_0/*/round_*/summary.json")
    }
    finished_rounds = sorted(str(p.relative_to(exp).parent) for p in finished)
    assert finished_rounds == ["trial_0/reinit/round_1", "trial_0/ticket/round_0", "trial_0/ticket/round_1"]

    rerun = run_main(*RESUME_ARGS, f"--output_dir={killed_dir}")
    assert rerun.returncode == 0, own_lines(rerun.stderr)
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0

    # No finished round is trained again.
    for path, stamp in finished.items():
        assert os.stat(path).st_mtime_ns == stamp, path
    for arm, r in (("ticket", 0), ("ticket", 1), ("reinit", 1)):
        assert re.search(rf"^trial 0 {arm} round {r}: .*skipped$", rerun.stdout, re.M), rerun.stdout
        assert not re.search(rf"^trial 0 {arm} round {r} \(", rerun.stdout, re.M)
    # Round 2 continues from its checkpoint.
    m = re.search(r"^trial 0 ticket round 2: resuming at iteration (\d+)$", rerun.stdout, re.M)
    assert m, rerun.stdout
    resumed_at = int(m.group(1))
    assert 0 < resumed_at < 1000 and resumed_at % 100 == 0
    evaluated = [int(i) for i in re.findall(r"^trial 0 ticket round 2 \(.*\) it (\d+)/1000", rerun.stdout, re.M)]
    assert evaluated == list(range(resumed_at + 100, 1001, 100))

    # Same results as never having been killed (wall time aside).
    a = pd.read_csv(exp / "summary.csv").drop(columns=["wall_time_s"])
    b = pd.read_csv(straight_dir / "lenet" / "summary.csv").drop(columns=["wall_time_s"])
    assert len(a) == 5
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for arm in ("ticket", "reinit"):
        rel = os.path.join("trial_0", arm, "round_2", "curve.csv")
        pd.testing.assert_frame_equal(
            pd.read_csv(exp / rel), pd.read_csv(straight_dir / "lenet" / rel), check_exact=True
        )
    assert not (exp / "trial_0" / "ticket" / "round_2" / "checkpoint").exists()
