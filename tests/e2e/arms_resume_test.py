"""Each arm that tickets are measured against (lr_rewind, finetune,
static_erk, set, rigl) resumes after SIGKILL mid-round to the result of a
run never killed.

The binary is killed for real (SIGKILL, from inside, right after it wrote a
checkpoint of the target round), once per arm, and rerun; each rerun must
resume the killed round from its checkpoint. The checkpoint is at iteration
60, the first evaluation (every 30) after 40, where SET and RigL have just
moved their masks (every 20): a resume that repeated or skipped that update,
or drew SET's growth from another random state, would end with other masks.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lth_keras.experiment import runner as experiment
from tests.helpers import REPO
from tests.helpers.runs import QUIET, subprocess_env

ARMS = ("lr_rewind", "finetune", "static_erk", "set", "rigl")
CONFIG = dict(model="lenet", dataset="synthetic", validation_size=100, synthetic_sizes=(600, 100), iterations=120,
              eval_every=30, checkpoint_every=40, rounds=3, optimizer="adam", learning_rate=3e-3, batch_size=30,
              lr_boundaries=(60,), pruning="global", prune_rate_dense=0.5, dst_update_frequency=20,
              controls=ARMS, tensorboard=False, deterministic=True, experiment="killed")

# Runs lth_keras.main, and SIGKILLs itself right after the first checkpoint of
# the round named by argv[1] (e.g. "rigl/round_2"; "" for none).
_KILLER = """
import os, runpy, signal, sys
from lth_keras.experiment import trial_state
save, target = trial_state.save_checkpoint, sys.argv[1]
def save_then_die(path, *args, **kwargs):
    save(path, *args, **kwargs)
    if target and target in path.replace(os.sep, "/"):
        os.kill(os.getpid(), signal.SIGKILL)
trial_state.save_checkpoint = save_then_die
sys.argv = ["lth_keras.main"] + sys.argv[2:]
runpy.run_module("lth_keras.main", run_name="__main__")
"""


def _flags(output_dir):
    flags = []
    for key, value in CONFIG.items():
        if isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no{key}")
        elif isinstance(value, tuple):
            flags.append(f"--{key}={','.join(map(str, value))}")
        else:
            flags.append(f"--{key}={value}")
    return flags + [f"--output_dir={output_dir}"]


@pytest.mark.slow
def test_each_arm_resumes_after_sigkill_to_the_uninterrupted_result(tmp_path):
    killed_dir = tmp_path / "killed"
    logs = []
    for target in [f"{arm}/round_2" for arm in ARMS] + [""]:
        proc = subprocess.run([sys.executable, "-c", _KILLER, target] + _flags(killed_dir), cwd=REPO,
                              env=subprocess_env(), capture_output=True, text=True, timeout=600)
        if target:
            assert proc.returncode == -9, (target, proc.returncode, proc.stderr[-2000:])
            arm = target.split("/")[0]
            assert not (killed_dir / "killed" / "trial_0" / arm / "round_2" / "summary.json").exists()
        else:
            assert proc.returncode == 0, proc.stderr[-2000:]
        logs.append(proc.stdout)
    # Each killed round continued from its checkpoint in the next run.
    for arm, log in zip(ARMS, logs[1:]):
        assert re.search(rf"^trial 0 {arm} round 2: resuming at iteration 60$", log, re.M), (arm, log[-3000:])

    straight = experiment.train_and_evaluate(experiment.ExperimentConfig(**CONFIG), str(tmp_path / "straight"),
                                             log=QUIET)
    a = pd.read_csv(killed_dir / "killed" / "summary.csv").drop(columns=["wall_time_s"])
    b = pd.read_csv(straight.summary_csv_path).drop(columns=["wall_time_s"])
    assert len(a) == 3 + 2 * len(ARMS)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for arm in ARMS:
        for name in ("mask.npz", "trained_weights.npz"):
            with np.load(killed_dir / "killed" / "trial_0" / arm / "round_2" / name) as x, \
                    np.load(os.path.join(straight.root, "trial_0", arm, "round_2", name)) as y:
                assert sorted(x.files) == sorted(y.files)
                for key in x.files:
                    np.testing.assert_array_equal(x[key], y[key], err_msg=f"{arm} {name} {key}")
