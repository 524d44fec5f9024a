#!/bin/bash
# predict_catalogue end to end on a GPU machine whose Python has JAX but no TensorFlow (Keras on
# JAX), beside the raw network rate on the same machine; the numbers in BENCHMARKS.md.
#
#   bash benchmarks/device/catalogue_on_gpu.sh RESULTS_DIR [N_STARS] ["WORKER COUNTS"]
#
# Run from the repository root. Packages the image lacks go first into /tmp/site (see BENCHMARKS.md).
set -euo pipefail
results=$(realpath "${1:?results directory}"); n=${2:-100000}; counts=${3:-"2 4 8 14"}
root=$PWD
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$root
mkdir -p "$results"
nvidia-smi -L > "$results/gpu.txt" || true
work=$(mktemp -d)
cd "$work"
for w in $counts; do
    # the first run also builds the demo catalogue (not counted in the job's own "seconds")
    /usr/bin/time -f "wall %e s, max RSS of the client %M kB" python3 -m jobs.predict_catalogue --n-demo "$n" \
        --workers "$w" --out "pred-$w.zarr" --no-progress 2>> "$results/stderr.txt" | tail -1 > "$results/summary-w$w.json"
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], 'workers:', s['stars_in'], 'stars', s['seconds'], 's', s['spectra_per_second'], '/s, setup', s['seconds_setup'], 's, worker peak', s['worker_peak_rss_mb'], 'MB')" "$results/summary-w$w.json" "$w"
    rm -rf "pred-$w.zarr"
done
cd "$root"
python3 -m benchmarks.bench_predict_device --inputs "${INPUTS:-.device/small/predict_inputs.npz}" --n 131072 \
    --batches 1024 --repeat 3 --out "$results/predict_raw.json"
