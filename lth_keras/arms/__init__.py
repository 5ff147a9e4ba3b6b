"""The arms of an experiment: a registry of small declarations (`Arm`, `register`).

`lth_keras.arms.registry` holds the registry; `lth_keras.arms.builtin`
declares the built-in arms, registered here on import (without Keras);
`lth_keras.arms.gradual` trains the ``gradual`` arm.
"""

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
from lth_keras.arms import builtin  # noqa: F401 - registers the built-in arms

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
