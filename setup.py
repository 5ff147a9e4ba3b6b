"""lth_keras: the Lottery Ticket Hypothesis for TensorFlow / Keras 3."""

import pathlib

from setuptools import find_packages, setup

README = pathlib.Path(__file__).with_name("README.md")

setup(
    name="lth_keras",
    version="0.1.0",
    description=(
        "Lottery Ticket Hypothesis for Keras 3: masked layers, iterative "
        "magnitude pruning with reset/rewinding, experiments and figures."
    ),
    long_description=README.read_text() if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["lth_keras", "lth_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets' download_and_prepare needs it on Python 3.11.
        "importlib_resources",
        "absl-py",
        "tensorboard",
        "numpy",
        "pandas",
        "matplotlib",
    ],
    extras_require={
        # jax: the tests compare scores and layers across backends;
        # keras-hub: models nobody here wrote, pruned in place.
        "test": ["pytest>=7", "scikit-learn", "jax", "jaxlib", "keras-hub"],
        # Other Keras backends for the library part (masked layers,
        # make_prunable, pruning, the callback). The binaries stay TensorFlow.
        "jax": ["jax", "jaxlib"],
        # Plain `torch` from PyPI brings CUDA; for a CPU-only machine install
        # the CPU wheel instead (see BUILD.md).
        "torch": ["torch"],
        # Runs only in its own process (lth_keras.baselines); never imported
        # by the core, because it switches tf.keras to tf_keras.
        "tfmot": ["tensorflow-model-optimization", "tf_keras"],
    },
)
