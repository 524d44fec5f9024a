"""nn.configure: thread pools set in a fresh process, and a clear 'not applied' once TF runs."""

import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

SCRIPT = """
import json, tensorflow as tf
from lamost2csst.nn.setup import configure
first = configure(threads=1)
threads = (tf.config.threading.get_intra_op_parallelism_threads(),
           tf.config.threading.get_inter_op_parallelism_threads())
tf.constant(1.0) + 1.0  # initializes the runtime
second = configure(threads=2)
print(json.dumps({"first": first, "threads": threads, "second": second}))
"""


def test_configure_sets_threads_then_reports_initialized_runtime():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["first"] == {"backend": "tensorflow", "applied": True}
    assert result["threads"] == [1, 1]
    assert result["second"] == {"backend": "tensorflow", "applied": False}
