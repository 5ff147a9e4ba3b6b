"""The arms of an experiment: a registry of small declarations (`Arm`, `register`)."""

from lth_keras.arms.registry import (
    Arm,
    controls,
    dependencies,
    get,
    names,
    order_key,
    register,
    ticket_same_round,
)

__all__ = [
    "Arm",
    "controls",
    "dependencies",
    "get",
    "names",
    "order_key",
    "register",
    "ticket_same_round",
]
