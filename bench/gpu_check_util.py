"""Helpers of bench/gpu_check.sh: stand-in data files and the result table.

    python bench/gpu_check_util.py data DIR [--quick]   # MNIST IDX + CIFAR10 binary files
    python bench/gpu_check_util.py table DIR            # prints the table of DIR/checks.tsv

The data are random pixels in the real datasets' file formats and sizes
(MNIST: 60,000 + 10,000 28x28 images; CIFAR10: 50,000 + 10,000 32x32x3), so
the runs exercise the real loaders, shapes and evaluation costs without a
download. Accuracies on them mean nothing (chance is 10%); times do.
Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import struct
import sys

import numpy as np

FULL = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}
QUICK = {"mnist": (2_000, 500), "cifar10": (1_500, 300)}


def _write_idx(path, array):
    codes = {np.uint8: 0x08}
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, codes[np.uint8], array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_data(directory, quick=False):
    sizes = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    mnist = os.path.join(directory, "mnist")
    os.makedirs(mnist, exist_ok=True)
    n_train, n_test = sizes["mnist"]
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(os.path.join(mnist, f"{prefix}-images-idx3-ubyte"), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(os.path.join(mnist, f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, (n,), dtype=np.uint8))
    cifar = os.path.join(directory, "cifar10")
    os.makedirs(cifar, exist_ok=True)
    n_train, n_test = sizes["cifar10"]
    files = [(f"data_batch_{i}.bin", n_train // 5) for i in range(1, 6)] + [("test_batch.bin", n_test)]
    for name, n in files:
        records = np.empty((n, 1 + 3072), np.uint8)
        records[:, 0] = rng.integers(0, 10, n)
        records[:, 1:] = rng.integers(0, 256, (n, 3072))
        with open(os.path.join(cifar, name), "wb") as f:
            f.write(records.tobytes())
    print(f"stand-in data ({'quick' if quick else 'full'} sizes) in {directory}")


def _summaries(run_dir):
    rows = []
    paths = glob.glob(os.path.join(run_dir, "trial_*", "ticket", "round_*", "summary.json"))
    for path in sorted(paths, key=lambda p: int(p.rsplit("round_", 1)[1].split(os.sep)[0])):
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def _benchmark_notes(log):
    notes = []
    for line in log.splitlines():
        m = re.match(r"ratio (\w+): ([0-9.]+)", line)
        if m:
            notes.append(f"{m.group(1)} {m.group(2)}")
        m = re.match(r"step (\w+): ([0-9.]+) ms", line)
        if m:
            notes.append(f"{m.group(1)} {m.group(2)} ms/step")
    return "; ".join(notes)


def table(directory):
    with open(os.path.join(directory, "checks.tsv")) as f:
        checks = list(csv.reader(f, delimiter="\t"))
    header = ("check", "status", "wall s", "rounds", "iterations", "ms/iteration (round 0)", "final test acc", "notes")
    rows = []
    failed = 0
    for name, status, wall, run_dir in checks:
        log_path = os.path.join(directory, f"{name}.log")
        log = open(log_path, errors="replace").read() if os.path.exists(log_path) else ""
        rounds = iterations = per_it = acc = ""
        notes = ""
        if name == "benchmark":
            notes = _benchmark_notes(log)
        elif run_dir and os.path.isdir(run_dir):
            summaries = _summaries(run_dir)
            if summaries:
                rounds = str(len(summaries))
                its = [s.get("iterations") for s in summaries]
                iterations = str(its[0]) if len(set(its)) == 1 else ",".join(map(str, its))
                # Round 0 trains 0..T; a rewound round only k..T.
                first = summaries[0]
                per_it = f"{first['wall_time_s'] / first['iterations'] * 1000:.3f}" if first.get("iterations") else ""
                acc = f"{summaries[-1].get('final_test_accuracy', float('nan')):.3f}"
            first = next((l for l in log.splitlines() if l.startswith("Experiment ")), "")
            notes = first.split(";", 1)[1].strip() if ";" in first else ""
        if status != "ok":
            failed += 1
            tail = [l for l in log.splitlines() if l.strip()][-1:] or ["(no output)"]
            notes = tail[0][:100]
        rows.append((name, status, wall, rounds, iterations, per_it, acc, notes))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return failed


def main(argv):
    if len(argv) >= 3 and argv[1] == "data":
        write_data(argv[2], quick="--quick" in argv[3:])
        return 0
    if len(argv) == 3 and argv[1] == "table":
        return 1 if table(argv[2]) else 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
