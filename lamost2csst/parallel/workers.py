"""Dask worker set-up: TensorFlow and the model, once per worker process."""

from __future__ import annotations

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from lamost2csst.core import INPUT_WAVE

__all__ = ["TensorFlowSetup"]


class TensorFlowSetup(WorkerPlugin):
    """Dask worker plugin: TensorFlow threads (and GPU memory growth), the model and the domain templates.

    Register with ``client.register_plugin(TensorFlowSetup(model_path))``. ``threads``
    defaults to the worker's thread count; the set-up is :func:`lamost2csst.nn.setup.configure`,
    which changes nothing when TensorFlow is already running in that process (an in-process
    worker). The model then lands in the per-process cache of
    :func:`lamost2csst.nn.inference.load_model`, which every task hits. ``warm_batch``: run
    one forward pass of that many spectra at set-up (compiles the shape that the tasks' full
    batches use: a ``tf.function`` trace, under JAX on a GPU an XLA compilation of several
    seconds), so that the tasks run at the steady rate; None skips it.
    """

    name = "lamost2csst-tensorflow"

    def __init__(self, model_path: str, *, threads: int | None = None, warm_batch: int | None = None):
        self.model_path = model_path
        self.threads = threads
        self.warm_batch = warm_batch

    def setup(self, worker=None):
        from lamost2csst.nn.setup import configure
        from lamost2csst.parallel.runtime import keep_freed_memory

        keep_freed_memory()
        configure(
            threads=self.threads or (worker.state.nthreads if worker is not None else 1),
            gpu_memory_growth=True,
        )
        from lamost2csst.nn.inference import load_model, predict

        model = load_model(self.model_path)
        from lamost2csst.parallel.predict_tasks import domain_templates_for

        domain_templates_for(self.model_path)  # the domain check's templates, cached like the model
        if self.warm_batch:
            flat = np.ones((self.warm_batch, INPUT_WAVE.size), np.float32)
            predict(flat, 0.01 * flat, model=model, batch_size=self.warm_batch)

    def teardown(self, worker=None):
        pass
