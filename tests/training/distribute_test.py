"""Tests for lth_keras.training.distribute: strategies, mixed precision, multi-worker runs.

MirroredStrategy runs on two logical CPUs and MultiWorkerMirroredStrategy on
two local processes, so everything here runs on a CPU-only machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lth_keras.training import distribute
from lth_keras.experiment import runner as experiment
from tests.helpers import REPO as ROOT
from tests.helpers.runs import subprocess_env

TINY = dict(
    model="lenet", dataset="synthetic", synthetic_sizes=(600, 100), validation_size=100,
    iterations=100, eval_every=50, batch_size=60, rounds=2, tensorboard=False, checkpoint_every=0,
)



def _run_script(tmp_path, name, code, *args, timeout=300, env=None):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env=env or subprocess_env(), cwd=ROOT,
    )


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k != "paths"}


def _round_file(root, round_, name, arm="ticket"):
    return os.path.join(root, "lenet", "trial_0", arm, f"round_{round_}", name)


# -- strategy selection and config --------------------------------------------


@pytest.mark.parametrize("gpus, expected", [(0, "default"), (1, "one_device"), (2, "mirrored"), (8, "mirrored")])
def test_auto_picks_strategy_by_gpu_count(gpus, expected):
    assert distribute.resolve_strategy_name("auto", num_gpus=gpus) == expected


def test_explicit_strategy_names_pass_through_and_unknown_is_rejected():
    for name in ("default", "one_device", "mirrored", "multi_worker", "tpu"):
        assert distribute.resolve_strategy_name(name, num_gpus=0) == name
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.resolve_strategy_name("horovod")


def test_config_validates_strategy_and_worker_timeout():
    with pytest.raises(experiment.ConfigError, match="--strategy"):
        experiment.ExperimentConfig(strategy="horovod").resolve()
    with pytest.raises(experiment.ConfigError, match="--worker_timeout"):
        experiment.ExperimentConfig(worker_timeout=0).resolve()


def test_new_flags_do_not_change_saved_configs():
    """Distribution flags never define an experiment; mixed precision only
    when switched on, so experiments saved before it existed still resume."""
    base = experiment.ExperimentConfig().resolve().defining()
    for key in ("strategy", "tpu", "worker_timeout", "mixed_precision"):
        assert key not in base
    changed = experiment.ExperimentConfig(strategy="mirrored", worker_timeout=5).resolve().defining()
    assert changed == base
    mixed = experiment.ExperimentConfig(mixed_precision=True).resolve().defining()
    assert mixed == dict(base, mixed_precision=True)


def test_flags_exist_in_main():
    from lth_keras import main

    for name in ("strategy", "tpu", "worker_timeout", "mixed_precision", "batch_size"):
        assert name in main.FLAGS
    assert "global" in main.FLAGS["batch_size"].help.lower()


def test_default_strategy_on_cpu_is_the_default_strategy():
    import tensorflow as tf

    strategy = distribute.make_strategy("auto")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("has a GPU")
    assert strategy is tf.distribute.get_strategy()
    sync = distribute.WorkerSync(strategy)
    assert sync.is_chief and not sync.active and distribute.num_workers(strategy) == 1
    assert sync.value(True) is True
    assert sync.arrays([np.arange(3)])[0].tolist() == [0, 1, 2]
    with distribute.worker_scratch_dir(strategy) as scratch:
        assert scratch is None


# -- mixed precision ----------------------------------------------------------


def test_mixed_precision_policy_and_loss_scaling():
    import keras

    from lth_keras import training

    strategy = distribute.make_strategy("default")
    assert distribute.mixed_precision_policy(strategy) in ("mixed_bfloat16", "mixed_float16")
    hp = training.TrainingHparams(iterations=10, batch_size=10)
    before = keras.mixed_precision.dtype_policy().name
    with distribute.dtype_policy("mixed_float16"):
        assert isinstance(training.make_optimizer(hp), keras.optimizers.LossScaleOptimizer)
    with distribute.dtype_policy("mixed_bfloat16"):
        assert not isinstance(training.make_optimizer(hp), keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.dtype_policy().name == before
    assert not isinstance(training.make_optimizer(hp), keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("xla_update", [True, False])
def test_mixed_float16_trainer_skips_overflowing_steps_and_keeps_masks_exact(xla_update):
    from lth_keras import datasets, layers, models, training

    data = datasets.load("synthetic", validation_size=100, synthetic_sizes=(600, 100))
    with distribute.dtype_policy("mixed_float16"):
        model = models.build("lenet", data.input_shape, seed=1)
        hp = training.TrainingHparams(iterations=20, batch_size=60, eval_every=20)
        trainer = training.Trainer(model, data, hp, seed=1, xla_update=xla_update)
        rng = np.random.default_rng(0)
        masks = {n: (rng.random(m.shape) < 0.5).astype(np.float32) for n, m in layers.get_masks(model).items()}
        layers.set_masks(model, masks)
        before = layers.get_masked_kernels(model)
        # A loss scale that overflows float16: the step must be skipped and
        # the scale halved, inside the compiled (XLA) update too.
        trainer.optimizer.dynamic_scale.assign(2.0**60)
        trainer.train_steps(0, 1)
        assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0**59
        for name, kernel in layers.get_masked_kernels(model).items():
            np.testing.assert_array_equal(kernel, before[name])
        trainer.optimizer.dynamic_scale.assign(2.0**10)
        trainer.train_steps(1, 19)
        after = layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert after[name].dtype == np.float32
        assert np.all(after[name][mask == 0] == 0.0), name
        assert np.any(after[name][mask == 1] != before[name][mask == 1]), name


def test_mixed_precision_experiment_keeps_masks_exact(tmp_path):
    import keras

    config = experiment.ExperimentConfig(**TINY, mixed_precision=True)
    lines = []
    experiment.train_and_evaluate(config, str(tmp_path), log=lines.append)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored
    assert "mixed_bfloat16" in lines[0]
    saved = json.loads((tmp_path / "lenet" / "config.json").read_text())
    assert saved["mixed_precision"] is True
    mask = _npz(_round_file(str(tmp_path), 1, "mask.npz"))
    trained = _npz(_round_file(str(tmp_path), 1, "trained_weights.npz"))
    kernels = [trained[k] for k in sorted(trained) if trained[k].ndim == 2]
    assert len(kernels) == len(mask) == 3
    for kernel, (name, m) in zip(kernels, sorted(mask.items(), key=lambda kv: ["dense_1", "dense_2", "output"].index(kv[0]))):
        assert kernel.dtype == np.float32 and kernel.shape == m.shape
        assert np.all(kernel[~m] == 0.0), name  # pruned weights stay exactly zero
        assert 0 < m.mean() < 1
    summary = json.loads(open(_round_file(str(tmp_path), 1, "summary.json")).read())
    assert summary["final_test_accuracy"] > 0.3


# -- MirroredStrategy on 2 logical CPUs ----------------------------------------

_MIRRORED = """
import json, os, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from lth_keras import layers, models, training, callbacks, datasets
from lth_keras.training import distribute
from lth_keras.experiment import runner as experiment

out = sys.argv[1]
tiny = json.loads(sys.argv[2])

def replicas_equal(variables):
    for v in variables:
        parts = [np.asarray(p.numpy()) for p in getattr(v._value if hasattr(v, "_value") else v, "values", ())]
        assert len(parts) == 2, (v.path, len(parts))
        assert all(np.array_equal(parts[0], p) for p in parts[1:]), v.path

checked = []
original_run = experiment._Trial.run
def run_and_check(self):
    original_run(self)
    if self.strategy.num_replicas_in_sync > 1:
        replicas_equal(self.model.variables)
        replicas_equal(self.trainer.optimizer.variables)
        checked.append(True)
experiment._Trial.run = run_and_check

# Same global batch and seed: default strategy, then 2 replicas x 30 examples.
experiment.train_and_evaluate(experiment.ExperimentConfig(**tiny, strategy="default"), os.path.join(out, "single"))
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
distribute._CACHE[("mirrored", None, None, 300.0)] = mirrored
experiment.train_and_evaluate(experiment.ExperimentConfig(**tiny, strategy="mirrored", controls=("reinit",)),
                              os.path.join(out, "mirrored"))
assert checked, "the mirrored run was not checked"

# Loss scaling (mixed_float16) across replicas: overflow decisions agree.
data = datasets.load("synthetic", validation_size=100, synthetic_sizes=(600, 100))
with distribute.dtype_policy("mixed_float16"), mirrored.scope():
    model = models.build("lenet", data.input_shape, seed=1)
    hp = training.TrainingHparams(iterations=20, batch_size=60, eval_every=20)
    trainer = training.Trainer(model, data, hp, seed=1, strategy=mirrored)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    callbacks.prune_model(model, 0.5)
    replicas_equal(model.variables)
    curve = trainer.train_round()
assert np.isfinite(curve[-1]["train_loss"])
replicas_equal(model.variables)
replicas_equal(trainer.optimizer.variables)
masks = layers.get_masks(model)
for mw in layers.masked_weights(model):
    assert np.all(mw.weight.numpy()[masks[mw.name] == 0] == 0)
print("MIRRORED_OK")
"""


def test_mirrored_two_cpus_matches_single_device(tmp_path):
    proc = _run_script(tmp_path, "mirrored.py", _MIRRORED, tmp_path, json.dumps(TINY))
    assert proc.returncode == 0 and "MIRRORED_OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "MirroredStrategy, 2 replica(s) x 30 examples" in proc.stdout
    single, mirrored = str(tmp_path / "single"), str(tmp_path / "mirrored")
    for round_ in range(2):
        m1, m2 = _npz(_round_file(single, round_, "mask.npz")), _npz(_round_file(mirrored, round_, "mask.npz"))
        assert m1.keys() == m2.keys()
        for k in m1:
            np.testing.assert_array_equal(m1[k], m2[k], err_msg=f"round {round_} mask {k}")
        w1 = _npz(_round_file(single, round_, "trained_weights.npz"))
        w2 = _npz(_round_file(mirrored, round_, "trained_weights.npz"))
        for k in w1:
            np.testing.assert_allclose(w1[k], w2[k], rtol=1e-4, atol=1e-5, err_msg=f"round {round_} weight {k}")
    assert os.path.exists(_round_file(mirrored, 1, "summary.json", arm="reinit"))


# -- MultiWorkerMirroredStrategy with 2 local processes -----------------------

_WORKER = """
import json, os, sys, time
index, ports, out, extra, dump = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
    "task": {"type": "worker", "index": index},
})
import numpy as np
from lth_keras import layers
from lth_keras.experiment import runner as experiment

original_run = experiment._Trial.run
def run_and_dump(self):
    original_run(self)
    # Test-only evidence outside the experiment directory.
    arrays = {f"mask/{k}": v for k, v in layers.get_masks(self.model).items()}
    arrays.update({f"var/{i:03d}": np.asarray(v.numpy()) for i, v in enumerate(self.model.variables)})
    np.savez(dump, **arrays)
experiment._Trial.run = run_and_dump

config = experiment.ExperimentConfig(**extra)
experiment.train_and_evaluate(config, out)
print(f"WORKER_{index}_DONE", flush=True)
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ",".join(map(str, ports))


def _start_workers(tmp_path, out, extra, tag):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    ports = _free_ports(2)
    procs, scratch = [], []
    for index in range(2):
        tmpdir = tmp_path / f"{tag}_tmp{index}"
        tmpdir.mkdir()
        scratch.append(tmpdir)
        log = open(tmp_path / f"{tag}_worker{index}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(index), ports, str(out), json.dumps(extra),
             str(tmp_path / f"{tag}_final{index}.npz")],
            stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(TMPDIR=str(tmpdir)), cwd=ROOT,
        ))
    return procs, scratch


def _log(tmp_path, tag, index):
    return (tmp_path / f"{tag}_worker{index}.log").read_text()


def _wait(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _assert_same_final_state(tmp_path, tag):
    a, b = _npz(tmp_path / f"{tag}_final0.npz"), _npz(tmp_path / f"{tag}_final1.npz")
    assert a.keys() == b.keys() and any(k.startswith("mask/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert 0 < np.mean([a[k].mean() for k in a if k.startswith("mask/")]) < 1


def _written_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


MULTI = dict(TINY, strategy="multi_worker", worker_timeout=30, controls=("random_mask",))


@pytest.mark.slow
def test_multi_worker_two_rounds_identical_masks_chief_writes(tmp_path):
    out = tmp_path / "out"
    procs, scratch = _start_workers(tmp_path, out, MULTI, "run")
    codes = _wait(procs, 300)
    logs = [_log(tmp_path, "run", i) for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "CollectiveAllReduceStrategy, 2 replica(s) x 30 examples" in logs[0]
    # Only the chief logs and writes; worker 1's scratch dir is gone.
    assert "Experiment " not in logs[1] and "round 1" not in logs[1]
    assert list(scratch[1].iterdir()) == []
    files = _written_files(out)
    for round_ in range(2):
        assert f"lenet/trial_0/ticket/round_{round_}/summary.json" in files
    assert "lenet/trial_0/random_mask/round_1/summary.json" in files
    assert not any("worker" in f for f in files)
    _assert_same_final_state(tmp_path, "run")
    # The chief's saved final mask is the one both workers hold.
    final = _npz(tmp_path / "run_final0.npz")
    saved = _npz(_round_file(str(out), 1, "mask.npz", arm="random_mask"))
    for k, v in saved.items():
        np.testing.assert_array_equal(final[f"mask/{k}"] != 0, v)


@pytest.mark.slow
def test_killed_worker_stops_the_other_and_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    timeout = 20
    extra = dict(MULTI, iterations=600, eval_every=100, worker_timeout=timeout, controls=())
    procs, _ = _start_workers(tmp_path, out, extra, "first")
    round0 = _round_file(str(out), 0, "summary.json")
    deadline = time.monotonic() + 240
    try:
        while not os.path.exists(round0) and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.2)
        assert os.path.exists(round0), _log(tmp_path, "first", 0)[-3000:]
        procs[1].kill()  # worker 1 dies in the middle of round 1
        killed = time.monotonic()
        code = _wait([procs[0]], 4 * timeout + 60)[0]
        elapsed = time.monotonic() - killed
    finally:
        _wait(procs, 5)
    log0 = _log(tmp_path, "first", 0)
    print(f"chief stopped {elapsed:.1f}s after worker 1 was killed (--worker_timeout={timeout})")
    assert code != 0
    assert "WorkerFailedError" in log0 and "peer worker failed" in log0, log0[-3000:]
    assert elapsed < 2 * timeout + 60, elapsed
    assert not os.path.exists(_round_file(str(out), 1, "summary.json"))

    # The same command on both workers resumes after the last finished round.
    procs, _ = _start_workers(tmp_path, out, extra, "second")
    codes = _wait(procs, 400)
    logs = [_log(tmp_path, "second", i) for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "trial 0 ticket round 0: done (P_m 100.0%), skipped" in logs[0]
    assert "ticket round 1 (P_m 80.0%) it 600/600" in logs[0]
    assert os.path.exists(_round_file(str(out), 1, "summary.json"))
    _assert_same_final_state(tmp_path, "second")


_MIRRORED_IN_PLACE = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import lth_keras
from lth_keras import layers

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    h = h + keras.ops.tanh(keras.layers.Dense(8)(h))
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
imp = lth_keras.IterativeMagnitudePruning(0.5, round_steps=4, output_layer=None, verbose=0)
model.fit(x, y, batch_size=16, epochs=3, callbacks=[imp], verbose=0)
for mw in layers.masked_weights(model):
    values = [np.asarray(p.numpy()) for p in getattr(mw.mask._value, "values", ())]
    assert all(np.array_equal(values[0], v) for v in values[1:]), mw.name
    assert len(values) == 2, mw.name
    weight, mask = keras.ops.convert_to_numpy(mw.weight), values[0]
    assert np.all(weight[mask == 0] == 0), mw.name
print("PM", [round(r["pm"], 1) for r in imp.rounds])
print("IN_PLACE_MIRRORED_OK")
"""


def test_masks_in_place_under_mirrored_strategy_are_mirrored_and_exact(tmp_path):
    proc = _run_script(tmp_path, "mirrored_in_place.py", _MIRRORED_IN_PLACE)
    assert proc.returncode == 0 and "IN_PLACE_MIRRORED_OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "PM [100.0, 50.0, 25.0]" in proc.stdout
