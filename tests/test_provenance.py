"""The machine record of grid stores and training runs: one source, two forms that agree."""

import os
import socket

from lamost2csst._provenance import machine_info, machine_line


def test_the_line_is_the_record_in_one_line():
    info = machine_info()
    assert info["node"] == socket.gethostname()
    assert info["cpus"] == os.cpu_count()
    line = machine_line()
    assert line.startswith(f"{info['node']} ") and line.endswith(f" {os.cpu_count()} cores")
    assert (info["cpu"] or "") in line
