"""TensorFlow/Keras process set-up in one place: threads, GPU memory growth, log level.

Every caller (the catalogue job's worker plugin, training, evaluation) calls
:func:`configure` before the first model is built or loaded in its process.
"""

from __future__ import annotations

import os


def configure(*, threads: int | None = None, gpu_memory_growth: bool = True) -> dict:
    """Set TensorFlow's thread pools and GPU memory growth for this process.

    Parameters
    ----------
    threads
        Intra- and inter-op thread count; None leaves TensorFlow's defaults.
    gpu_memory_growth
        Let TensorFlow grow its GPU memory instead of reserving it all at start.

    Returns
    -------
    dict
        ``backend`` (the Keras backend) and ``applied``: False when TensorFlow was already
        initialized in this process (an in-process worker), so its settings could not change.
        Other backends (``KERAS_BACKEND=jax``) are left as they are.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ banner per process
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        return {"backend": backend, "applied": False}
    import tensorflow as tf

    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        if gpu_memory_growth:
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already initialized in this process
        return {"backend": backend, "applied": False}
    return {"backend": backend, "applied": True}
