"""The machine a product was made on, recorded in its provenance (grid stores, training runs).

A leaf module (standard library only), so every layer may import it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket


def machine_info() -> dict:
    """This machine: host name, platform, CPU model and count."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"node": socket.gethostname(), "platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count()}


def machine_line() -> str:
    """:func:`machine_info` in one line: ``"<node> <cpu> <n> cores"``."""
    info = machine_info()
    return f"{info['node']} {info['cpu'] or platform.machine()} {info['cpus']} cores"
