"""The model registry: the paper's architectures, and any user's `module:build`."""

from lth_keras.models.architectures import (
    CUSTOM_REQUIRED_FLAGS,
    CustomModelError,
    MODELS,
    ModelDefaults,
    ModelSpec,
    build,
    build_custom,
    count_prunable_weights,
    custom_defaults,
    defaults,
    is_custom,
    load_builder,
)

__all__ = [
    "CUSTOM_REQUIRED_FLAGS",
    "CustomModelError",
    "MODELS",
    "ModelDefaults",
    "ModelSpec",
    "build",
    "build_custom",
    "count_prunable_weights",
    "custom_defaults",
    "defaults",
    "is_custom",
    "load_builder",
]
