"""Science workflows above the array layers and below the command lines.

Training-library assembly (the real and synthetic libraries a network is trained on) and
model evaluation (the paper's tables and figures, baselines). They combine ``io`` readers,
``core`` numerics and ``nn`` models; they create no Dask cluster of their own, except
:mod:`~lamost2csst.workflows.lamost_files`, which runs the survey jobs on a one-worker
LocalCluster when it is given no client.
"""
