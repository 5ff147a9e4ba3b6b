r"""Speed of lth_keras's training loop, as ratios timed in the same run.

    python bench/bench_training.py                      # full sizes
    python bench/bench_training.py --quick              # seconds, for CI
    python bench/bench_training.py --tfmot_python=/path/to/tfmot_venv/bin/python

Prints one ``ratio`` line per target (value, target, verdict) next to the
absolute times it came from, then ``step`` lines for conv2 and resnet18. The
full-size run recorded in bench/README.md ("Latest figures", 2 idle vCPUs)
printed:

    ratio masked_vs_bare_tf: 0.853 (target <= 1.25, ok) [ours 1.050 ms/step, bare TF 1.231 ms/step]
    ratio masked_vs_unmasked: 1.053 (target <= 1.05, MISSED) [masked 1.050 ms/step, unmasked 0.998 ms/step]
    ratio imp_round_vs_training: 1.356 (target <= 1.30, MISSED) [round 2.212 s = 1000 iterations + 10 evaluations of 5000+10000 examples; training alone 1.632 s]
    ratio tfmot_vs_ours: 2.256 (target > 1, ok) [tf_keras 2.21.0 + TFMOT 0.8.1 model.fit 2.369 ms/step, ours 1.050 ms/step]
    step conv2: 108.673 ms per step (batch 60, adam, augment=False; 552 examples/s)

Targets (see bench/README.md):
  * masked LeNet-300-100 step in our loop vs. a bare TensorFlow loop
    (tf.Variables, tf.function, GradientTape, hand-written Adam, same
    on-device batches): <= 1.25;
  * masked vs. the same model with plain Keras layers in our loop: <= 1.05;
  * a full IMP round (training + validation/test every 100 iterations) vs.
    its pure training time: <= 1.30;
  * tf_keras + TFMOT prune_low_magnitude through model.fit (in a separate
    process and interpreter, `bench_tfmot.py`) vs. ours: > 1 (we are faster).

Timings alternate between the contenders and keep the best of `--repeats`
chunks, which is the least noisy estimate on a shared machine. The data are
synthetic arrays of MNIST/CIFAR10 shape, so no download is needed; speed does
not depend on pixel values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from lth_keras import datasets, layers, models, training  # noqa: E402

TARGETS = {
    "masked_vs_bare_tf": 1.25,
    "masked_vs_unmasked": 1.05,
    "imp_round_vs_training": 1.30,
}


def _data(shape, n_train, n_val, n_test, seed=0):
    rng = np.random.default_rng(seed)

    def draw(n):
        return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)

    (xt, yt), (xv, yv), (xs, ys) = draw(n_train), draw(n_val), draw(n_test)
    return datasets.Dataset("bench", xt, yt, xv, yv, xs, ys, 10, False, "synthetic (benchmark)")


def _best_per_step(fn, steps, repeats):
    """Seconds per step: the best of `repeats` calls of fn() doing `steps` steps."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / steps


def _interleaved(contenders, steps, repeats):
    """{name: best seconds/step}, alternating contenders every repeat."""
    best = {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
    return best


# -- the bare TensorFlow reference --------------------------------------------


class BareLeNet:
    """LeNet-300-100 + Adam with tf.Variables, tf.function and GradientTape.

    Same math as our loop: glorot-normal init, batches gathered on device from
    a per-epoch stateless permutation, sum-of-cross-entropy / batch loss,
    Adam (Keras's defaults: beta 0.9/0.999, eps 1e-7), loss and accuracy sums.
    """

    def __init__(self, data, batch_size, lr=1.2e-3, seed=0):
        rng = np.random.default_rng(seed)
        sizes = [int(np.prod(data.x_train.shape[1:])), 300, 100, 10]
        self.params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = np.sqrt(2.0 / (fan_in + fan_out))
            w = np.clip(rng.standard_normal((fan_in, fan_out)), -2, 2) * std / 0.8796
            self.params += [tf.Variable(w.astype(np.float32)), tf.Variable(np.zeros(fan_out, np.float32))]
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.t = tf.Variable(0.0)
        self.lr, self.b1, self.b2, self.eps = lr, 0.9, 0.999, 1e-7
        self.batch = batch_size
        self.x = tf.constant(data.x_train.reshape(len(data.x_train), -1))
        self.y = tf.constant(data.y_train)
        self.steps_per_epoch = len(data.x_train) // batch_size
        self.seed = seed
        self.chunk = tf.function(self._chunk)

    def _perm(self, epoch):
        keys = tf.random.stateless_uniform([tf.shape(self.x)[0]], seed=tf.stack([self.seed, epoch]))
        return tf.argsort(keys)

    def _forward(self, x):
        w1, b1, w2, b2, w3, b3 = self.params
        h = tf.nn.relu(x @ w1 + b1)
        h = tf.nn.relu(h @ w2 + b2)
        return h @ w3 + b3

    def _chunk(self, start, n):
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        perm = self._perm(start // self.steps_per_epoch)
        for i in tf.range(n):
            it = start + i
            pos = it % self.steps_per_epoch
            if pos == 0:
                perm = self._perm(it // self.steps_per_epoch)
            idx = perm[pos * self.batch : (pos + 1) * self.batch]
            x, y = tf.gather(self.x, idx), tf.gather(self.y, idx)
            with tf.GradientTape() as tape:
                logits = self._forward(x)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                loss = tf.reduce_sum(ce) / self.batch
            grads = tape.gradient(loss, self.params)
            self.t.assign_add(1.0)
            lr = self.lr * tf.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
            for p, g, m, v in zip(self.params, grads, self.m, self.v):
                m.assign_add((g - m) * (1 - self.b1))
                v.assign_add((tf.square(g) - v) * (1 - self.b2))
                p.assign_sub(lr * m / (tf.sqrt(v) + self.eps))
            loss_sum += tf.reduce_sum(ce)
            correct_sum += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss_sum, correct_sum

    def run(self, start, n):
        loss, correct = self.chunk(tf.constant(start, tf.int32), tf.constant(n, tf.int32))
        return float(loss), float(correct)


# -- ours -------------------------------------------------------------------------


def _plain_lenet(input_shape):
    """models.build("lenet") with keras.layers.Dense instead of MaskedDense."""
    masked = models.build("lenet", input_shape, seed=0)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units, activation in ((300, "relu"), (100, "relu"), (10, None)):
        x = keras.layers.Dense(units, activation=activation)(x)
    plain = keras.Model(inputs, x)
    for layer, kernel in zip([l for l in plain.layers if l.weights], layers.get_masked_kernels(masked).values()):
        layer.kernel.assign(kernel)
    return plain


def _trainer(model, data, iterations, batch_size, optimizer="adam", lr=1.2e-3, **kw):
    hp = training.TrainingHparams(
        iterations=iterations, batch_size=batch_size, optimizer=optimizer, learning_rate=lr, **kw
    )
    return training.Trainer(model, data, hp, seed=0)


def _fmt(seconds):
    return f"{seconds * 1e3:.3f} ms"


def _ratio(name, value, detail):
    target = TARGETS[name]
    verdict = "ok" if value <= target else "MISSED"
    print(f"ratio {name}: {value:.3f} (target <= {target:.2f}, {verdict}) {detail}", flush=True)


def bench_lenet(args):
    data = _data((28, 28, 1), args.train_size, args.val_size, args.test_size)
    chunk, repeats = args.chunk, args.repeats
    masked = models.build("lenet", data.input_shape, seed=0)
    plain = _plain_lenet(data.input_shape)
    ours = _trainer(masked, data, args.iterations, 60)
    ours_plain = _trainer(plain, data, args.iterations, 60)
    bare = BareLeNet(data, 60)
    state = {"ours": 0, "plain": 0, "bare": 0}

    def step(name, fn):
        def run():
            fn(state[name], chunk)
            state[name] += chunk
        return run

    contenders = {
        "bare": step("bare", bare.run),
        "ours": step("ours", ours.train_steps),
        "plain": step("plain", ours_plain.train_steps),
    }
    for fn in contenders.values():  # trace and warm up
        fn()
    best = _interleaved(contenders, chunk, repeats)
    print(
        f"lenet step (batch 60, Adam, {chunk} steps per compiled call): bare TF {_fmt(best['bare'])}, "
        f"ours masked {_fmt(best['ours'])}, ours unmasked {_fmt(best['plain'])}",
        flush=True,
    )
    _ratio("masked_vs_bare_tf", best["ours"] / best["bare"],
           f"[ours {_fmt(best['ours'])}/step, bare TF {_fmt(best['bare'])}/step]")
    _ratio("masked_vs_unmasked", best["ours"] / best["plain"],
           f"[masked {_fmt(best['ours'])}/step, unmasked {_fmt(best['plain'])}/step]")

    # A full round (evaluations every eval_every) vs. its pure training.
    iterations = args.iterations
    round_trainer = _trainer(models.build("lenet", data.input_shape, seed=0), data, iterations, 60,
                             eval_every=args.eval_every)
    round_trainer.train_round()  # trace everything once
    round_times, train_times = [], []
    for _ in range(max(1, args.round_repeats)):
        round_trainer.reset_round()
        t = time.perf_counter()
        round_trainer.train_steps(0, iterations)
        train_times.append(time.perf_counter() - t)
        round_trainer.reset_round()
        t = time.perf_counter()
        round_trainer.train_round()
        round_times.append(time.perf_counter() - t)
    r, tr = min(round_times), min(train_times)
    evals = iterations // args.eval_every
    _ratio("imp_round_vs_training", r / tr,
           f"[round {r:.3f} s = {iterations} iterations + {evals} evaluations of "
           f"{args.val_size}+{args.test_size} examples; training alone {tr:.3f} s]")
    return best["ours"]


def bench_tfmot(args, ours_step):
    python = args.tfmot_python
    if not python or not os.path.exists(python):
        print("ratio tfmot_vs_ours: skipped: no tfmot interpreter"
              + (f" ({python} not found)" if python else " (pass --tfmot_python)"), flush=True)
        return
    cmd = [
        python, os.path.join(HERE, "bench_tfmot.py"),
        f"--train_size={args.train_size}", f"--steps={args.chunk}", f"--repeats={args.repeats}",
    ]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.tfmot_timeout)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("TFMOT_RESULT "):
            result = json.loads(line[len("TFMOT_RESULT "):])
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"ratio tfmot_vs_ours: skipped: tfmot benchmark failed (rc {proc.returncode}): {' | '.join(tail)}",
              flush=True)
        return
    theirs = result["seconds_per_step"]
    ratio = theirs / ours_step
    print(
        f"ratio tfmot_vs_ours: {ratio:.3f} (target > 1, {'ok' if ratio > 1 else 'MISSED'}) "
        f"[tf_keras {result['tf_keras']} + TFMOT {result['tfmot']} model.fit {_fmt(theirs)}/step, "
        f"ours {_fmt(ours_step)}/step]",
        flush=True,
    )


def bench_step(name, args):
    """Our step time for a CIFAR10 net at its paper batch size."""
    spec = models.defaults(name)
    batch = spec.batch_size
    data = _data((32, 32, 3), args.cifar_train_size, 10, 10)
    model = models.build(name, data.input_shape, seed=0)
    trainer = _trainer(model, data, args.iterations, batch, optimizer=spec.optimizer,
                       lr=spec.learning_rate, momentum=spec.momentum or 0.0,
                       augment=bool(spec.augment))
    steps = args.cifar_steps
    trainer.train_steps(0, steps)
    per_step = _best_per_step(lambda: trainer.train_steps(0, steps), steps, args.cifar_repeats)
    print(f"step {name}: {_fmt(per_step)} per step (batch {batch}, {spec.optimizer}, "
          f"augment={bool(spec.augment)}; {batch / per_step:.0f} examples/s)", flush=True)


def _device():
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return ", ".join(names)
    return f"CPU only ({os.cpu_count()} logical cores visible)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run; ratios are noisy)")
    p.add_argument("--train_size", type=int, default=55_000)
    p.add_argument("--val_size", type=int, default=5_000)
    p.add_argument("--test_size", type=int, default=10_000)
    p.add_argument("--iterations", type=int, default=1_000, help="iterations of the timed IMP round")
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--chunk", type=int, default=500, help="steps per timed compiled call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--round_repeats", type=int, default=2)
    p.add_argument("--models", default="conv2,resnet18", help="CIFAR nets to time ('' for none)")
    p.add_argument("--cifar_train_size", type=int, default=45_000)
    p.add_argument("--cifar_steps", type=int, default=10, help="steps per timed call for conv2/resnet18")
    p.add_argument("--cifar_repeats", type=int, default=3)
    p.add_argument("--tfmot_python", default=os.environ.get("LTH_TFMOT_PYTHON", ""),
                   help="interpreter of a venv with tf_keras + tensorflow-model-optimization")
    p.add_argument("--tfmot_timeout", type=int, default=900)
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.val_size, args.test_size = 1_200, 200, 200
        args.iterations, args.eval_every, args.chunk = 100, 50, 50
        args.repeats, args.round_repeats = 2, 1
        args.cifar_train_size, args.cifar_steps, args.cifar_repeats = 256, 1, 1
    print(f"# lth_keras benchmark: TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"device: {_device()}", flush=True)
    ours_step = bench_lenet(args)
    bench_tfmot(args, ours_step)
    for name in filter(None, args.models.split(",")):
        bench_step(name, args)


if __name__ == "__main__":
    main()
