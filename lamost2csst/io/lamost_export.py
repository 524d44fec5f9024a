"""Write catalogue stars as LAMOST LRS FITS files (both layouts), readable by :func:`read_lamost`.

For demos, tests and benchmarks of the ingestion path: the demo catalogue exported as the
files a survey delivers, so that the whole chain FITS -> Zarr -> predictions can be run
and timed. The files follow what :mod:`lamost2csst.io.readers.lamost` reads: ``image``
(DR1-7: a (5, N) float32 primary image of flux, ivar, wavelength, andmask, ormask) or
``table`` (DR8+: a one-row binary table in HDU 1), vacuum wavelengths with ``COEFF0`` /
``COEFF1``, and the header keys OBSID, RA, DEC, Z (LAMOST's -9999 for a missing z),
Z_ERR, SNRU..SNRZ, CLASS, SUBCLASS, DATA_V. Masked pixels get ``ivar = 0`` and
``ANDMASK = 1``, as in LAMOST files.
"""

from __future__ import annotations

import gzip
import io
import math
import os

import numpy as np
import xarray as xr
from astropy.io import fits

from lamost2csst.core import LAMOST_WAVE

__all__ = ["export_lamost", "write_lamost_file"]

LAYOUTS = ("image", "table")
_COEFF0, _COEFF1 = 3.5682, 1e-4


def write_lamost_file(
    path, *, flux, ivar, mask, header: dict, layout: str = "image", gz: bool = False
) -> str:
    """Write one LAMOST LRS file of a spectrum on ``LAMOST_WAVE``.

    ``header`` holds the FITS keys (OBSID, RA, DEC, Z, ...); NaN values are written as
    LAMOST's -9999.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    n = LAMOST_WAVE.size
    flux, ivar, mask = (np.asarray(a) for a in (flux, ivar, mask))
    if not flux.shape == ivar.shape == mask.shape == (n,):
        raise ValueError(f"flux, ivar and mask must be ({n},) arrays on LAMOST_WAVE")
    rows = np.vstack(
        [flux, np.where(mask, 0.0, ivar), LAMOST_WAVE, mask.astype(np.float32), mask.astype(np.float32)]
    ).astype(np.float32)
    hdr = fits.Header()
    for key, value in {"COEFF0": _COEFF0, "COEFF1": _COEFF1, "VACUUM": True, **header}.items():
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            value = -9999.0
        hdr[key] = value.item() if isinstance(value, np.generic) else value
    if layout == "image":
        hdul = fits.HDUList([fits.PrimaryHDU(rows, header=hdr)])
    else:
        columns = [
            fits.Column(name=name, format=f"{n}E", array=rows[i][None, :])
            for i, name in enumerate(("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"))
        ]
        hdul = fits.HDUList(
            [fits.PrimaryHDU(header=hdr), fits.BinTableHDU.from_columns(columns, name="COADD")]
        )
    path = os.fspath(path)
    if gz:
        buffer = io.BytesIO()
        hdul.writeto(buffer)
        with open(path, "wb") as f:
            f.write(gzip.compress(buffer.getvalue(), compresslevel=1))
    else:
        hdul.writeto(path, overwrite=True)
    return path


def export_lamost(ds: xr.Dataset, folder, *, layout: str = "image", gz: bool = False) -> list[str]:
    """Write every star of a catalogue on ``LAMOST_WAVE`` as one LAMOST file in ``folder``.

    Files are named ``spec-<obsid>.fits[.gz]``; ``layout="mixed"`` alternates the two
    layouts star by star. Returns the paths, in star order.
    """
    if ds.sizes["wave"] != LAMOST_WAVE.size or not np.allclose(ds["wave"].values, LAMOST_WAVE, rtol=1e-9):
        raise ValueError("the catalogue must be on LAMOST_WAVE to be written as LAMOST files")
    if layout not in (*LAYOUTS, "mixed"):
        raise ValueError(f"layout must be 'image', 'table' or 'mixed', got {layout!r}")
    os.makedirs(folder, exist_ok=True)
    flux, ivar, mask = ds["flux"].values, ds["ivar"].values, ds["mask"].values
    keys = {"RA": "ra", "DEC": "dec", "Z": "z", "SNRG": "snr_g"}
    paths = []
    for i, obsid in enumerate(ds["obsid"].values):
        header = {"OBSID": int(obsid), "CLASS": "STAR", "DATA_V": "lamost2csst export"}
        header.update({key: float(ds[name].values[i]) for key, name in keys.items() if name in ds.coords})
        this_layout = LAYOUTS[i % 2] if layout == "mixed" else layout
        name = f"spec-{int(obsid)}.fits" + (".gz" if gz else "")
        paths.append(
            write_lamost_file(
                os.path.join(folder, name),
                flux=flux[i],
                ivar=ivar[i],
                mask=mask[i],
                header=header,
                layout=this_layout,
                gz=gz,
            )
        )
    return paths
