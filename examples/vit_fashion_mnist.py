r"""A lottery ticket in a small KerasHub ViT on Fashion-MNIST, with the random-reinit control.

The model is a plain KerasHub `keras_hub.models.ViTBackbone` (random init, no
preset: 28x28x1 images cut into 7x7 patches, so 16 patch tokens plus a class
token; 2 transformer blocks of width 64, 4 heads, MLP 128) with a Dense(10)
head on the class token (or on the mean of the tokens, ``--pool=mean``).
Nothing converts it: `lth_keras.IterativeMagnitudePruning` runs as a callback
inside one `model.fit` and attaches masks to the plain model in place
(every Dense/EinsumDense kernel of attention and MLP, the patch-embedding
Conv2D, the position embedding and the head).

Per trial:

- ``ticket``: ``--rounds`` rounds of ``--round_steps`` Adam steps; after each
  round but the last the callback prunes by magnitude (``--scope``,
  ``--rates``) and resets the survivors to θ0.
- ``reinit`` (``--controls=reinit``): for every ticket round r >= 1, a fresh
  model with a new random init (seed ``1000 * trial + r``) gets the mask
  of ticket round r (`lth_keras.add_masks`, then
  `lth_keras.layers.set_masks`) and is trained ``--round_steps`` steps with
  no pruning, on the same data order as the ticket's first round.

Every ``--eval_every`` steps the validation (5,000 held-out training images)
and test loss/accuracy are measured. Outputs, in ``--out_dir``:

- ``summary.csv``: one row per (trial, arm, round): ``pm`` (percent of masked
  weights remaining), ``test_accuracy``/``val_accuracy`` at the end of the
  round, ``steps``, the early-stop iteration (minimum validation loss, as in
  the paper) with the test accuracy there, the best-validation-accuracy
  iteration with its test accuracy, and timings;
- ``curves.csv``: one row per evaluation;
- ``trial_<t>_ticket_rounds.csv``: the callback's own per-round table
  (`IterativeMagnitudePruning.to_csv`: per-layer P_m, fit logs);
- ``test_accuracy.png`` (test accuracy against P_m at the end of training
  and at early stop, ticket against reinit, mean over trials with min/max
  bars) and ``accuracy_curves.png``;
- ``command.txt`` and ``flags.txt``: the command line and every flag value
  (``--flagfile=<out_dir>/flags.txt`` reruns it).

    python examples/vit_fashion_mnist.py --out_dir=figures/vit_fashion_mnist
    python examples/vit_fashion_mnist.py --out_dir=figures/vit_fashion_mnist --plot_only
"""

from __future__ import annotations

import csv
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)

flags.DEFINE_string("out_dir", "figures/vit_fashion_mnist", "Directory for the CSVs, figures and flags.")
flags.DEFINE_bool("plot_only", False, "Only redraw the figures from <out_dir>/summary.csv and curves.csv.")
# Model.
flags.DEFINE_integer("patch_size", 7, "ViT patch size (28 must be a multiple of it).")
flags.DEFINE_integer("num_layers", 2, "Transformer blocks.")
flags.DEFINE_integer("hidden_dim", 64, "Token width.")
flags.DEFINE_integer("num_heads", 4, "Attention heads.")
flags.DEFINE_integer("mlp_dim", 128, "MLP width of each block.")
flags.DEFINE_enum("pool", "cls", ["cls", "mean"], "Head input: the class token, or the mean of the tokens.")
# Training.
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (constant).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("round_steps", 2000, "Optimizer steps per round (and per reinit run).")
flags.DEFINE_integer("eval_every", 250, "Evaluate validation and test sets every this many steps.")
# Pruning.
flags.DEFINE_integer("rounds", 7, "IMP rounds, the dense round 0 included.")
flags.DEFINE_enum("scope", "layerwise", ["layerwise", "global"], "Magnitude pruning scope.")
flags.DEFINE_string(
    "rates", "dense=0.3,conv=0.15,output=0.15",
    "Pruning rate per round: a float, or kind=rate pairs (kinds: dense, conv, output, embedding; "
    "kinds not named are not pruned). Global scope takes a float.")
# Trials and controls.
flags.DEFINE_integer("trials", 2, "Trials (seed 1000 * trial).")
flags.DEFINE_integer("first_trial", 0, "Run trials first_trial .. trials - 1 (rows of other trials in summary.csv are kept).")
flags.DEFINE_list("controls", ["reinit"], "Controls to run: reinit, or none (empty).")
flags.DEFINE_integer("validation_size", 5000, "Training images held out for validation.")
# This script's flags, in definition order (flags.txt).
OWN_FLAGS = [name for name in FLAGS if name not in _ABSL_FLAGS and name != "plot_only"]


def arm_style(name):
    """The arm's label, colour, line style and marker, as in every figure."""
    from lth_keras import arms  # no Keras: --plot_only stays light

    arm = arms.get(name)
    return dict(label=arm.label, color=arm.color, linestyle=arm.linestyle, marker=arm.marker)

PM_LABEL = "Percent of weights remaining (P_m)"
SUMMARY_COLUMNS = [
    "trial", "arm", "round", "pm", "test_accuracy", "val_accuracy", "test_loss", "val_loss", "steps",
    "early_stop_iteration", "early_stop_val_loss", "early_stop_test_accuracy",
    "best_val_accuracy_iteration", "best_val_accuracy", "best_val_test_accuracy",
    "seed", "train_seconds", "eval_seconds", "seconds_per_step",
]
CURVE_COLUMNS = ["trial", "arm", "round", "iteration", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]


def parse_rates(text):
    text = text.strip()
    if "=" not in text:
        return float(text)
    rates = {}
    for part in text.split(","):
        key, value = part.split("=")
        rates[key.strip()] = float(value)
    return rates


def build_model(input_shape, num_classes, seed):
    """The plain KerasHub ViT and head, initialised from `seed`."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=input_shape, patch_size=FLAGS.patch_size, num_layers=FLAGS.num_layers,
        num_heads=FLAGS.num_heads, hidden_dim=FLAGS.hidden_dim, mlp_dim=FLAGS.mlp_dim,
        use_class_token=FLAGS.pool == "cls",
    )
    inputs = keras.Input(input_shape)
    tokens = backbone(inputs)
    if FLAGS.pool == "cls":
        features = keras.layers.Lambda(lambda t: t[:, 0], name="class_token")(tokens)
    else:
        features = keras.layers.GlobalAveragePooling1D(name="mean_pool")(tokens)
    outputs = keras.layers.Dense(num_classes, name="output")(features)
    model = keras.Model(inputs, outputs, name="vit_fashion_mnist")
    model.compile(
        keras.optimizers.Adam(FLAGS.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_batches(data, seed):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    ds = ds.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(FLAGS.batch_size, drop_remainder=True).prefetch(2)


def _loss_and_accuracy(model, x, y):
    import numpy as np

    logits = model.predict(x, batch_size=1000, verbose=0).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean()), float((logits.argmax(axis=1) == y).mean())


def _recorder_class():
    import keras

    class RoundRecorder(keras.callbacks.Callback):
        """Evaluates every `eval_every` steps and closes a row at the end of
        every round of `round_steps` steps, before IterativeMagnitudePruning
        (listed after it) prunes and resets. It counts the batches itself:
        the pruning callback resets the optimizer's iteration count."""

        def __init__(self, data, trial, arm, first_round, seed, on_row):
            super().__init__()
            self.data, self.trial, self.arm, self.round, self.seed = data, trial, arm, first_round, seed
            self.on_row = on_row
            self.masks = {}  # round -> masks during that round (ticket arm)

        def on_train_begin(self, logs=None):
            self.step, self.curve, self.eval_seconds = 0, [], 0.0
            self.round_began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            from lth_keras import layers as lth_layers

            self.step += 1
            in_round = (self.step - 1) % FLAGS.round_steps + 1
            if in_round % FLAGS.eval_every and in_round != FLAGS.round_steps:
                return
            began = time.perf_counter()
            val_loss, val_acc = _loss_and_accuracy(self.model, self.data.x_val, self.data.y_val)
            test_loss, test_acc = _loss_and_accuracy(self.model, self.data.x_test, self.data.y_test)
            self.eval_seconds += time.perf_counter() - began
            self.curve.append(dict(trial=self.trial, arm=self.arm, round=self.round, iteration=in_round,
                                   val_loss=val_loss, val_accuracy=val_acc, test_loss=test_loss,
                                   test_accuracy=test_acc))
            if in_round != FLAGS.round_steps:
                return
            pm = 100.0 * lth_layers.fraction_remaining(self.model)
            if self.arm == "ticket":
                self.masks[self.round] = lth_layers.get_masks(self.model)
            early = min(self.curve, key=lambda r: (r["val_loss"], r["iteration"]))
            best = max(self.curve, key=lambda r: (r["val_accuracy"], -r["iteration"]))
            total = time.perf_counter() - self.round_began
            row = dict(
                trial=self.trial, arm=self.arm, round=self.round, pm=pm, test_accuracy=test_acc,
                val_accuracy=val_acc, test_loss=test_loss, val_loss=val_loss, steps=in_round,
                early_stop_iteration=early["iteration"], early_stop_val_loss=early["val_loss"],
                early_stop_test_accuracy=early["test_accuracy"],
                best_val_accuracy_iteration=best["iteration"], best_val_accuracy=best["val_accuracy"],
                best_val_test_accuracy=best["test_accuracy"], seed=self.seed,
                train_seconds=total - self.eval_seconds, eval_seconds=self.eval_seconds,
                seconds_per_step=(total - self.eval_seconds) / in_round,
            )
            self.on_row(row, self.curve)
            self.round += 1
            self.curve, self.eval_seconds = [], 0.0
            self.round_began = time.perf_counter()  # the pruning step's time counts toward the next round

    return RoundRecorder


class Results:
    """summary.csv and curves.csv, rewritten after every round."""

    def __init__(self, out_dir, keep_trials_below):
        import pandas as pd

        self.out_dir = out_dir
        self.summary, self.curves = [], []
        for name, rows, columns in (("summary.csv", self.summary, SUMMARY_COLUMNS),
                                    ("curves.csv", self.curves, CURVE_COLUMNS)):
            path = os.path.join(out_dir, name)
            if os.path.exists(path) and keep_trials_below > 0:
                old = pd.read_csv(path)
                rows.extend(old[old["trial"] < keep_trials_below].to_dict("records"))

    def add(self, row, curve):
        self.summary.append(row)
        self.curves.extend(curve)
        self._write("summary.csv", self.summary, SUMMARY_COLUMNS)
        self._write("curves.csv", self.curves, CURVE_COLUMNS)
        print(f"trial {row['trial']} {row['arm']:6s} round {row['round']}: P_m {row['pm']:6.2f}%  "
              f"test {row['test_accuracy']:.4f} (early stop {row['early_stop_test_accuracy']:.4f} "
              f"at {row['early_stop_iteration']})  val {row['val_accuracy']:.4f}  "
              f"{row['seconds_per_step'] * 1000:.1f} ms/step, train {row['train_seconds']:.0f}s "
              f"eval {row['eval_seconds']:.0f}s", flush=True)

    def _write(self, name, rows, columns):
        path = os.path.join(self.out_dir, name)
        with open(path + ".tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(path + ".tmp", path)


def run_trial(trial, data, results):
    import lth_keras
    from lth_keras import layers as lth_layers

    RoundRecorder = _recorder_class()
    seed = 1000 * trial
    model = build_model(data.input_shape, data.num_classes, seed)
    recorder = RoundRecorder(data, trial, "ticket", 0, seed, results.add)
    imp = lth_keras.IterativeMagnitudePruning(
        rates=parse_rates(FLAGS.rates), round_steps=FLAGS.round_steps, scope=FLAGS.scope, verbose=1)
    # The recorder comes first: at a round's last step it reads the round's
    # weights and mask before the pruning callback prunes and resets.
    model.fit(train_batches(data, seed), steps_per_epoch=FLAGS.round_steps, epochs=FLAGS.rounds,
              callbacks=[recorder, imp], shuffle=False, verbose=0)
    imp.to_csv(os.path.join(FLAGS.out_dir, f"trial_{trial}_ticket_rounds.csv"))
    if "reinit" not in FLAGS.controls:
        return
    for round_ in range(1, FLAGS.rounds):
        reinit_seed = seed + round_
        model = build_model(data.input_shape, data.num_classes, reinit_seed)
        lth_keras.add_masks(model)
        lth_layers.set_masks(model, recorder.masks[round_])
        check = 100.0 * lth_layers.fraction_remaining(model)
        control = RoundRecorder(data, trial, "reinit", round_, reinit_seed, results.add)
        model.fit(train_batches(data, seed), steps_per_epoch=FLAGS.round_steps, epochs=1,
                  callbacks=[control], shuffle=False, verbose=0)
        if abs(100.0 * lth_layers.fraction_remaining(model) - check) > 1e-9:
            raise AssertionError("the reinit network's mask changed during training")


def plot(out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import pandas as pd
    from matplotlib import ticker
    from matplotlib.figure import Figure

    summary = pd.read_csv(os.path.join(out_dir, "summary.csv"))
    dense = summary[(summary["arm"] == "ticket") & (summary["round"] == 0)]
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    panels = (("test_accuracy", "Test accuracy at end of training"),
              ("early_stop_test_accuracy", "Test accuracy at early stop (min. val. loss)"))
    for i, (metric, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        pms = []
        for arm, style in ((a, arm_style(a)) for a in ("ticket", "reinit")):
            rows = summary[summary["arm"] == arm]
            if rows.empty:
                continue
            if arm != "ticket":  # controls start from the ticket's dense round, as in lth_keras's figures
                rows = pd.concat([dense, rows])
            points = rows.groupby("round").agg(pm=("pm", "mean"), mean=(metric, "mean"), lo=(metric, "min"),
                                               hi=(metric, "max"), n=(metric, "size")).reset_index()
            y = 100 * points["mean"].to_numpy()
            yerr = np.maximum(np.vstack([y - 100 * points["lo"].to_numpy(), 100 * points["hi"].to_numpy() - y]), 0)
            ax.errorbar(points["pm"], y, yerr=yerr, markersize=4, capsize=3, linewidth=1.5, **style)
            pms.extend(points["pm"])
        ax.set_xscale("log")
        ticks = sorted({round(p, 1) for p in pms}, reverse=True)
        ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: f"{round(float(v), 1):g}"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.invert_xaxis()
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel(PM_LABEL)
        ax.set_ylabel("Test accuracy (%)")
        ax.set_title(title)
        ax.legend(fontsize="small")
    trials = summary["trial"].nunique()
    fig.suptitle(f"ViT (KerasHub, random init) on Fashion-MNIST: {trials} trial{'s' * (trials > 1)}, "
                 f"mean with min/max")
    fig.savefig(os.path.join(out_dir, "test_accuracy.png"), dpi=120)

    curves_path = os.path.join(out_dir, "curves.csv")
    if not os.path.exists(curves_path):
        return
    curves = pd.read_csv(curves_path)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    rounds = sorted(summary.loc[summary["arm"] == "ticket", "round"].unique())
    show = sorted({rounds[0], rounds[len(rounds) // 2], rounds[-1]})
    cmap = matplotlib.colormaps["viridis"]
    for j, round_ in enumerate(show):
        color = cmap(j / max(1, len(show) - 1) * 0.85)
        for arm, linestyle in (("ticket", "-"), ("reinit", "--")):
            c = curves[(curves["arm"] == arm) & (curves["round"] == round_)]
            if c.empty:
                continue
            mean = c.groupby("iteration")["test_accuracy"].mean()
            pm = summary[(summary["arm"] == arm) & (summary["round"] == round_)]["pm"].mean()
            ax.plot(mean.index, 100 * mean.to_numpy(), color=color, linestyle=linestyle, linewidth=1.5,
                    label=f"{arm_style(arm)['label']}, P_m {pm:.1f}%")
    ax.set_xlabel("Training iteration")
    ax.set_ylabel("Test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Test accuracy during training (mean over trials)")
    fig.savefig(os.path.join(out_dir, "accuracy_curves.png"), dpi=120)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    if FLAGS.plot_only:
        plot(FLAGS.out_dir)
        return
    if FLAGS.round_steps % FLAGS.eval_every:
        raise app.UsageError("--round_steps must be a multiple of --eval_every")
    with open(os.path.join(FLAGS.out_dir, "command.txt"), "w") as f:
        f.write(" ".join(shlex.quote(a) for a in ["python"] + sys.argv) + "\n")
    with open(os.path.join(FLAGS.out_dir, "flags.txt"), "w") as f:
        for name in OWN_FLAGS:
            value = FLAGS[name].value
            f.write(f"--{name}={','.join(map(str, value)) if isinstance(value, list) else value}\n")

    from lth_keras import datasets

    data = datasets.load("fashion_mnist", validation_size=FLAGS.validation_size)
    print(data, flush=True)
    results = Results(FLAGS.out_dir, keep_trials_below=FLAGS.first_trial)
    began = time.perf_counter()
    for trial in range(FLAGS.first_trial, FLAGS.trials):
        run_trial(trial, data, results)
        plot(FLAGS.out_dir)
    print(f"done in {(time.perf_counter() - began) / 60:.1f} minutes", flush=True)


if __name__ == "__main__":
    app.run(main)
