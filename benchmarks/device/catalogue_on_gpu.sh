#!/bin/bash
# predict_catalogue end to end on a GPU machine whose Python has JAX but no TensorFlow (Keras on
# JAX), beside the raw network rate on the same machine; the numbers in BENCHMARKS.md.
#
#   bash benchmarks/device/catalogue_on_gpu.sh RESULTS_DIR [N_STARS] ["CLUSTERS"] [RAW_N]
#
# CLUSTERS: LocalCluster shapes to run, each WORKERS or WORKERSxTHREADS (e.g. "2 8 1x8"); the
# first one also builds the demo catalogue (not counted in the job's own "seconds").
# RAW_N: spectra of the raw network benchmark (0 skips it). Run from the repository root.
# Packages the image lacks go first into /tmp/site (see BENCHMARKS.md).
set -euo pipefail
results=$(realpath "${1:?results directory}"); n=${2:-100000}; clusters=${3:-"2 4 8 14"}; raw_n=${4:-131072}
root=$PWD
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$root
mkdir -p "$results"
nvidia-smi -L > "$results/gpu.txt" || true
work=$(mktemp -d)
cd "$work"
for c in $clusters; do
    w=${c%x*}; t=1; [[ $c == *x* ]] && t=${c#*x}
    /usr/bin/time -f "wall %e s, max RSS of the client %M kB" python3 -m jobs.predict_catalogue --n-demo "$n" \
        --workers "$w" --threads-per-worker "$t" --out "pred-$c.zarr" --no-progress 2>> "$results/stderr.txt" \
        | tail -1 > "$results/summary-$c.json"
    python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))
print(sys.argv[2], 'workers x threads:', s['stars_in'], 'stars', s['seconds'], 's', s['spectra_per_second'], '/s, setup',
      s['seconds_setup'], 's, worker peak', s['worker_peak_rss_mb'], 'MB; task seconds',
      {k[13:]: s[k] for k in s if k.startswith('task_seconds_')})" "$results/summary-$c.json" "$c"
    rm -rf "pred-$c.zarr"
done
cd "$root"
if [ "$raw_n" != 0 ]; then
    python3 -m benchmarks.bench_predict_device --inputs "${INPUTS:-.device/small/predict_inputs.npz}" --n "$raw_n" \
        --batches 1024 --repeat 3 --out "$results/predict_raw.json"
fi
