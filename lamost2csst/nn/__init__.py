"""UaRA-net in TensorFlow/Keras 3 (paper Sect. 3, Table 1): layers, losses, training, inference.

This layer imports TensorFlow/Keras and numpy, never dask or xarray. Importing
:mod:`lamost2csst.nn` is lazy: TensorFlow loads when a name is first used.
"""

from __future__ import annotations

from lamost2csst._lazy import lazy_exports

_EXPORTS = {
    "build_uaranet": "lamost2csst.nn.model",
    "ModelConfig": "lamost2csst.nn.model",
    "SubUnit": "lamost2csst.nn.layers",
    "SoftThreshold": "lamost2csst.nn.layers",
    "gaussian_nll": "lamost2csst.nn.losses",
    "load_model": "lamost2csst.nn.inference",
    "save_model": "lamost2csst.nn.inference",
    "predict": "lamost2csst.nn.inference",
    "prepare_network_arrays": "lamost2csst.nn.inference",
    "MASKED_ERROR": "lamost2csst.nn.inference",
    "configure": "lamost2csst.nn.setup",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("lamost2csst.nn", _EXPORTS)
