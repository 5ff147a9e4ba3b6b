"""Distribution strategies, mixed precision and worker roles.

`make_strategy` turns the ``--strategy`` flag into a `tf.distribute.Strategy`:

========== ==============================================================
auto        mirrored with more than one GPU, one_device with one GPU,
            default on CPU.
default     TensorFlow's default strategy (no distribution).
one_device  `OneDeviceStrategy` on the first GPU (or the CPU).
mirrored    `MirroredStrategy` over every local GPU (or the given devices).
multi_worker `MultiWorkerMirroredStrategy`; the cluster comes from the
            ``TF_CONFIG`` environment variable.
tpu         `TPUStrategy`; ``--tpu`` gives the TPU address ("" = local).
========== ==============================================================

``--batch_size`` is always the *global* batch: every optimizer step consumes
``batch_size`` examples in total, ``batch_size / num_replicas`` on each
replica, so a run gives the same learning curve (up to floating-point
summation order) on 1 device, N GPUs or several hosts.

Across workers, `WorkerSync` makes every decision and every piece of state
that comes from files (which rounds are done, masks, reset weights,
checkpoints) the chief's: the chief computes it and broadcasts it to the
other workers with a collective, so all replicas of all workers hold
identical masks and weights after every prune and every reset. Only the
chief writes results; the other workers write into a private scratch
directory (`worker_scratch_dir`) that is deleted when they exit.

A worker that dies is noticed by the others through the coordination
service's heartbeat (and, as a backstop, through the collectives' timeout):
they stop with `WorkerFailedError` after at most about `worker_timeout`
seconds instead of hanging. Rerunning the same command resumes from the last
finished round (or the last checkpoint).

Example (single process, any hardware):

```python
from lth_keras.training import distribute

strategy = distribute.make_strategy("auto")
with strategy.scope():
    model = lth_keras.models.build("lenet", (28, 28, 1))
```
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np

__all__ = [
    "STRATEGIES",
    "DEFAULT_WORKER_TIMEOUT",
    "WorkerFailedError",
    "resolve_strategy_name",
    "make_strategy",
    "mixed_precision_policy",
    "dtype_policy",
    "is_chief",
    "num_workers",
    "worker_index",
    "WorkerSync",
    "worker_scratch_dir",
]

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")

#: Seconds after which a lost peer (missed heartbeats) or a stuck collective
#: stops a multi-worker run. Long enough for a slow first compilation on one
#: worker, short enough that a dead peer does not hold a cluster for hours.
DEFAULT_WORKER_TIMEOUT = 300

# Strategies are process-wide: MultiWorkerMirroredStrategy configures the
# collective runtime and a TPU system is initialised once.
_CACHE: dict = {}


class WorkerFailedError(RuntimeError):
    """A peer worker died or stopped answering; the run cannot continue."""


def _gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def resolve_strategy_name(name: str, num_gpus: int | None = None) -> str:
    """The concrete strategy ``"auto"`` stands for (others are returned as is).

    Args:
        name: one of `STRATEGIES`.
        num_gpus: GPUs visible to this process (default: ask TensorFlow).

    Raises:
        ValueError: an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    if name != "auto":
        return name
    if num_gpus is None:
        num_gpus = len(_gpus())
    if num_gpus > 1:
        return "mirrored"
    if num_gpus == 1:
        return "one_device"
    return "default"


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None


def _configure_coordination_service(timeout_s: int) -> None:
    """Sets the heartbeat timeout before MultiWorkerMirroredStrategy starts.

    The strategy configures a coordination service with TensorFlow's defaults
    only if none is configured yet; configuring it first bounds how long a
    dead peer goes unnoticed.
    """
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context
    from tensorflow.python.training import server_lib

    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    except ImportError:  # pragma: no cover - older layouts
        from tensorflow.tsl.protobuf import coordination_config_pb2

    cfg = _tf_config()
    cluster = server_lib.ClusterSpec(cfg.get("cluster", {}))
    task_type = cfg.get("task", {}).get("type")
    if not cluster.as_dict() or task_type not in ("chief", "worker"):
        return
    if context.context().coordination_service is not None:
        return
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
        for job in ("chief", "worker")
        if job in cluster.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster),
        heartbeat_timeout_in_ms=int(timeout_s * 1000),
        # Waiting for peers to register, and for the shutdown barrier, are
        # bounded too: a worker that never comes up is an error, not a hang.
        cluster_register_timeout_in_ms=int(max(timeout_s, 60) * 1000),
        shutdown_barrier_timeout_in_ms=int(timeout_s * 1000),
        coordinated_jobs=jobs,
    )


def make_strategy(
    name: str = "auto",
    *,
    tpu: str | None = None,
    devices=None,
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
):
    """Creates (once per process) the strategy ``--strategy`` names.

    Args:
        name: one of `STRATEGIES`.
        tpu: the TPU address for ``"tpu"`` (a name, ``grpc://host:port``, or
            ``""``/None for a local TPU VM).
        devices: explicit devices for ``"mirrored"`` (default: all GPUs, or
            the CPU when there are none).
        worker_timeout: for ``"multi_worker"``: seconds of missed heartbeats
            after which a peer counts as dead, and the timeout of every
            collective. Must be positive.

    Returns:
        The `tf.distribute.Strategy`. Build models and optimizers inside its
        ``scope()``.
    """
    import tensorflow as tf

    name = resolve_strategy_name(name)
    key = (name, tpu, tuple(devices) if devices else None, float(worker_timeout))
    if key in _CACHE:
        return _CACHE[key]
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "one_device":
        gpus = _gpus()
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    elif name == "mirrored":
        if devices is None and not _gpus():
            devices = ["/cpu:0"]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multi_worker":
        if not worker_timeout or worker_timeout <= 0:
            raise ValueError(f"worker_timeout must be positive, got {worker_timeout}.")
        if any(k[0] == "multi_worker" for k in _CACHE):
            raise RuntimeError("Only one MultiWorkerMirroredStrategy can exist per process.")
        _configure_coordination_service(worker_timeout)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=float(worker_timeout))
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:  # pragma: no cover - resolve_strategy_name checked
        raise ValueError(name)
    _CACHE[key] = strategy
    return strategy


def _is_tpu(strategy) -> bool:
    return "TPUStrategy" in type(strategy).__name__


def _uses_gpu(strategy) -> bool:
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy
        return bool(_gpus())
    return any("GPU" in d.upper() for d in devices)


def mixed_precision_policy(strategy) -> str:
    """``mixed_float16`` on GPU; ``mixed_bfloat16`` on TPU and CPU."""
    if _is_tpu(strategy):
        return "mixed_bfloat16"
    return "mixed_float16" if _uses_gpu(strategy) else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(policy: str | None):
    """Sets Keras's global dtype policy inside the block and restores it after.

    None leaves the policy alone. Models must be built inside the block;
    variables (weights and masks) stay float32, so masks are exact.
    `lth_keras.training.make_optimizer` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer` under ``mixed_float16``.
    """
    import keras

    if policy is None:
        yield
        return
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


# -- worker roles -----------------------------------------------------------


def _cluster_resolver(strategy):
    return getattr(strategy, "cluster_resolver", None)


def num_workers(strategy) -> int:
    """Worker processes taking part in `strategy` (1 unless multi-worker)."""
    resolver = _cluster_resolver(strategy)
    if resolver is None or _is_tpu(strategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, ())) for job in ("chief", "worker")) or 1


def worker_index(strategy) -> int:
    """This worker's position (0 is the chief)."""
    if num_workers(strategy) == 1:
        return 0
    resolver = _cluster_resolver(strategy)
    from tensorflow.python.distribute import multi_worker_util

    return multi_worker_util.id_in_cluster(
        resolver.cluster_spec(), resolver.task_type, resolver.task_id
    )


def is_chief(strategy) -> bool:
    """Whether this process writes results (always true on one worker)."""
    return worker_index(strategy) == 0


def _is_peer_failure(error) -> bool:
    import tensorflow as tf

    return isinstance(
        error,
        (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
            tf.errors.InternalError,
            tf.errors.UnknownError,
        ),
    )


@contextlib.contextmanager
def peer_failures_as_errors(strategy, timeout: float | None = None):
    """Turns the errors a dead peer causes into `WorkerFailedError`."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised
        if num_workers(strategy) > 1 and _is_peer_failure(e):
            raise WorkerFailedError(
                f"worker {worker_index(strategy)}: a peer worker failed or stopped "
                f"responding (--worker_timeout={timeout}); rerun the same command on "
                f"every worker to resume from the last finished round. Cause: "
                f"{type(e).__name__}: {_cause(e)}"
            ) from e
        raise


def _cause(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    keys = ("abort", "timeout", "deadline", "unavailable", "heartbeat", "connection", "unhealthy", "peer")
    for line in lines:
        if any(k in line.lower() for k in keys) and not line.startswith("File "):
            return line
    return lines[0] if lines else ""


class WorkerSync:
    """Makes the chief's values every worker's values.

    With one worker every method returns its argument unchanged. With
    several, the argument is only read on the chief and broadcast (an
    all-reduce in which the other workers contribute zeros), so the other
    workers may pass anything of the right shape.

    Every worker must make the same calls in the same order.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.num_workers = num_workers(strategy)
        self.index = worker_index(strategy)
        self.is_chief = self.index == 0
        self._fn = None

    @property
    def active(self) -> bool:
        return self.num_workers > 1

    def _broadcast_fn(self):
        if self._fn is None:
            import tensorflow as tf

            strategy = self.strategy

            def replica_fn(tensors):
                ctx = tf.distribute.get_replica_context()
                first = tf.equal(ctx.replica_id_in_sync_group, 0)
                tensors = [tf.where(first, t, tf.zeros_like(t)) for t in tensors]
                return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tensors)

            @tf.function(reduce_retracing=True)
            def broadcast(tensors):
                out = strategy.run(replica_fn, args=(tensors,))
                return [strategy.experimental_local_results(t)[0] for t in out]

            self._fn = broadcast
        return self._fn

    def arrays(self, values: list) -> list[np.ndarray]:
        """The chief's arrays (same shapes and dtypes on every worker)."""
        if not self.active or not values:
            return [np.asarray(v) for v in values]
        import tensorflow as tf

        values = [np.asarray(v) for v in values]
        # Collectives reduce floats; other dtypes travel as float64 (exact
        # for the small integers and booleans sent here).
        wire = [v if v.dtype in (np.float32, np.float64) else v.astype(np.float64) for v in values]
        with peer_failures_as_errors(self.strategy):
            out = self._broadcast_fn()([tf.constant(w) for w in wire])
        return [np.asarray(o.numpy()).astype(v.dtype).reshape(v.shape) for o, v in zip(out, values)]

    def value(self, value):
        """The chief's scalar (bool, int or float)."""
        if not self.active:
            return value
        kind = type(value)
        result = self.arrays([np.array(value, np.float64)])[0]
        return kind(result.item())

    def dict(self, values: dict, template: dict) -> dict:
        """The chief's ``{name: array}``; `template` gives names and shapes
        (on the chief `values` is sent; elsewhere it is ignored)."""
        if not self.active:
            return values
        names = sorted(template)
        source = values if self.is_chief else template
        out = self.arrays([np.asarray(source[n], np.asarray(template[n]).dtype) for n in names])
        return dict(zip(names, out))

    def variables(self, variables) -> None:
        """Assigns the chief's values to `variables` on every worker."""
        if not self.active:
            return
        variables = list(variables)
        values = self.arrays([np.array(v.numpy()) for v in variables])
        for variable, value in zip(variables, values):
            variable.assign(value)


@contextlib.contextmanager
def worker_scratch_dir(strategy):
    """Yields None on the chief; elsewhere a private temp dir deleted at exit.

    Non-chief workers run the same code as the chief but point it here, so
    they never write to the shared output directory.
    """
    if is_chief(strategy):
        yield None
        return
    path = tempfile.mkdtemp(prefix=f"lth_keras_worker{worker_index(strategy)}_")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
