#!/bin/bash
# Issue 21, part 5: predict_catalogue on >= 1,000,000 demo stars on one GPU, the disk's measured
# read rate beside it, and the raw network rate on the same machine; what limits the job.
#
#   bash benchmarks/device/predict_1m_on_gpu.sh RESULTS_DIR [N_STARS] [WORKERS] [RAW_N]
#
# N_STARS: demo stars (default 1000000); WORKERS: LocalCluster worker processes, 1 thread each
# (default 4; they share the one GPU); RAW_N: spectra of the raw network benchmark (default
# 262144; 0 skips it; its inputs come from `python -m benchmarks.bench_predict_device
# --make-inputs .device/small/predict_inputs.npz`, made beforehand on a CPU machine).
# Run from the repository root on the GPU machine. Keras runs on JAX (GPU machines often lack
# TensorFlow; KERAS_BACKEND=tensorflow runs the same script on TensorFlow, e.g. to try it on a
# CPU). JAX_COMPILATION_CACHE_DIR is set under RESULTS_DIR so that the workers compile the
# network once between them, not once each. Every step is bounded by `timeout` so that a slow
# step cannot eat the whole device lease; each step's output is written as it finishes.
set -euo pipefail
results=$(realpath "${1:?results directory}")
n=${2:-1000000}; workers=${3:-4}; raw_n=${4:-262144}
root=$PWD
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export PYTHONPATH=/tmp/site:$root TF_CPP_MIN_LOG_LEVEL=3
export JAX_COMPILATION_CACHE_DIR=$results/jax-cache
mkdir -p "$results" "$JAX_COMPILATION_CACHE_DIR"
{ nvidia-smi -L || echo "no nvidia-smi"; nproc; free -g | head -2; df -h . | tail -1; } > "$results/machine.txt" 2>&1
work=${WORKDIR:-$(mktemp -d -p "$root")}  # on the repository's disk (not /tmp, which may be RAM)
cd "$work"

# 1. The disk: sequential read of a fresh 4 GiB file with O_DIRECT (the page cache bypassed).
timeout 120 dd if=/dev/urandom of=disk_probe bs=64M count=64 status=none
sync
timeout 120 dd if=disk_probe of=/dev/null bs=64M iflag=direct 2> "$results/disk_read.txt" || \
    timeout 120 dd if=disk_probe of=/dev/null bs=64M 2> "$results/disk_read.txt"  # no O_DIRECT here
rm -f disk_probe
tail -1 "$results/disk_read.txt"

# 2. The demo catalogue (timed apart from the job), then the job on it.
/usr/bin/time -f "demo catalogue: wall %e s" timeout 300 python3 -c "
from distributed import Client, LocalCluster
from lamost2csst.parallel.demo import grid_demo_catalogue
with LocalCluster(n_workers=$(nproc), threads_per_worker=1, dashboard_address=':0') as c, Client(c) as client:
    print(grid_demo_catalogue('catalogue.zarr', n_star=$n, seed=1, client=client, progress=False))
" 2>&1 | tail -2 | tee "$results/demo.txt"
du -sb catalogue.zarr/flux catalogue.zarr/ivar catalogue.zarr/mask | tee "$results/catalogue_bytes.txt"
# the catalogue's pixels read back as the job's tasks read them (one process; files probably cached)
timeout 120 python3 -c "
import time, zarr
from lamost2csst.io.regions import read_region
n = zarr.open_group('catalogue.zarr', mode='r')['flux'].shape[0]
t, stop = time.perf_counter(), min(n, 131072)
for start in range(0, stop, 4096):
    read_region('catalogue.zarr', start, min(start + 4096, stop), ('flux', 'ivar', 'mask'))
s = time.perf_counter() - t
print(f'catalogue read in one process: {stop / s:.0f} spectra/s ({stop} spectra, {s:.2f} s)')
" | tee "$results/catalogue_read.txt"
/usr/bin/time -f "job: wall %e s, client max RSS %M kB" timeout 420 python3 -m jobs.predict_catalogue \
    --catalogue catalogue.zarr --out pred.zarr --workers "$workers" --threads-per-worker 1 --no-progress \
    2>> "$results/stderr.txt" | tail -1 > "$results/summary.json"
python3 - "$results/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
steady = s["stars_written"] / (s["seconds"] - s["seconds_setup"])
parts = {k[13:]: s[k] for k in s if k.startswith("task_seconds_")}
print(f"{s['stars_written']} stars in {s['seconds']} s ({s['spectra_per_second']}/s end to end, "
      f"{steady:.0f}/s steady), set-up {s['seconds_setup']} s; task seconds {parts}")
EOF
cd "$root"
rm -rf "$work"

# 3. The raw network on the same machine (bench_predict_device: batches of 1024 and 16384).
if [ "$raw_n" != 0 ]; then
    timeout 240 python3 -m benchmarks.bench_predict_device --inputs "${INPUTS:-.device/small/predict_inputs.npz}" \
        --n "$raw_n" --batches 1024 16384 --repeat 3 --out "$results/predict_raw.json"
fi
