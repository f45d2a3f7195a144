"""Loading TensorFlow quietly, and only when a command needs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType


@cache
def tensorflow() -> ModuleType:
    """Import TensorFlow (and Keras) and probe the devices, with native stderr muted.

    TensorFlow's C++ start-up writes CUDA probing and CPU-feature notices
    straight to file descriptor 2, before any log level applies; on a CLI
    whose stderr is for people, that is noise. Python exceptions still
    surface normally.
    """
    with _native_stderr_muted():
        import keras  # noqa: F401  (imports TensorFlow as its backend)
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA initialisation happens, and logs, here
    return tf


@contextmanager
def _native_stderr_muted() -> Iterator[None]:
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@cache
def device_name() -> str:
    """Where TensorFlow runs the models: "CPU", or the GPU's name (loads TensorFlow)."""
    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return f"GPU: {name}" + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")
