"""Writers of small files in the layouts the readers expect (astropy), for the reader tests."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
from astropy.io import fits

REPO = Path(__file__).resolve().parents[3]
REAL_LAMOST = REPO.parent / "shared" / "data" / "lamost" / "spec-57287-KP193637N444141V03_sp10-161.fits.gz"

LAMOST_KEYS = {
    "OBSID": 123456789,
    "RA": 10.5,
    "DEC": -5.25,
    "Z": 1.5e-4,
    "Z_ERR": 2e-5,
    "CLASS": "STAR",
    "SUBCLASS": "G2",
    "DATA_V": "LAMOST DR5",
    "SNRU": 5.0,
    "SNRG": 20.0,
    "SNRR": 30.0,
    "SNRI": 40.0,
    "SNRZ": 25.0,
}


def lamost_arrays(n=3909, coeff0=3.5682, coeff1=1e-4, seed=0):
    """(5, n) float32 rows flux, ivar, wavelength, andmask, ormask of a fake LAMOST spectrum."""
    rng = np.random.default_rng(seed)
    wave = 10.0 ** (coeff0 + coeff1 * np.arange(n))
    flux = rng.uniform(100, 200, n)
    ivar = rng.uniform(0.01, 0.02, n)
    andmask = np.zeros(n)
    ormask = np.zeros(n)
    return np.vstack([flux, ivar, wave, andmask, ormask]).astype(np.float32)


def lamost_header(coeff0=3.5682, coeff1=1e-4, drop=(), **keys):
    header = fits.Header()
    for k, v in {**LAMOST_KEYS, "COEFF0": coeff0, "COEFF1": coeff1, "VACUUM": True, **keys}.items():
        header[k] = v
    for k in drop:
        del header[k]
    return header


def write_lamost(path, rows=None, header=None, *, layout="image", gz=False):
    """Write a LAMOST file: 'image' (DR1-7, (5, N) primary) or 'table' (one-row binary table)."""
    rows = lamost_arrays() if rows is None else rows
    header = lamost_header() if header is None else header
    if layout == "image":
        hdul = fits.HDUList([fits.PrimaryHDU(rows, header=header)])
    else:
        n = rows.shape[1]
        cols = [
            fits.Column(name=name, format=f"{n}E", array=rows[i][None, :])
            for i, name in enumerate(("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"))
        ]
        hdul = fits.HDUList(
            [fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(cols, name="COADD")]
        )
    return write_hdul(path, hdul, gz=gz)


def write_hdul(path, hdul, *, gz=False):
    path = Path(path)
    if gz:
        from io import BytesIO

        buf = BytesIO()
        hdul.writeto(buf)
        path.write_bytes(gzip.compress(buf.getvalue()))
    else:
        hdul.writeto(path, overwrite=True)
    return path


def write_miles(path, *, n=4300, crval=3540.5, cdelt=0.9, fwhm=2.5, flux=None, seed=0):
    flux = np.random.default_rng(seed).uniform(0.5, 1.5, n) if flux is None else flux
    hdu = fits.PrimaryHDU(np.asarray(flux, dtype=np.float64))
    hdu.header.update({"TPLLIB": "MILES", "FWHM": fwhm, "CRPIX1": 1, "CRVAL1": crval, "CDELT1": cdelt})
    return write_hdul(path, fits.HDUList([hdu]))


def write_stelib(path, *, n=6700, crval=3199.78, cdelt=0.99993, flux=None, seed=0, **keys):
    if flux is None:
        flux = np.random.default_rng(seed).uniform(1e-13, 2e-13, n)
        flux[:50] = 0.0  # no data at the blue end, as in STELIB
    hdu = fits.PrimaryHDU(np.asarray(flux, dtype=np.float32))
    header = {
        "BUNIT": "erg /s /cm2 /angstroms",
        "CTYPE1": "LINEAR",
        "CRVAL1": crval,
        "CRPIX1": 1.0,
        "CDELT1": cdelt,
        "CD1_1": cdelt,
        "STARIDEN": "HD000001",
        "SPECTYPE": "G2V",
        "U": 8.1,
        "B": 7.6,
        "V": 7.0,
        "R": -99.0,
        "RADVEL": 12.5,
        "TEFF": 5770,
        "LOG_G": 4.44,
        "FE_H": 0.0,
    }
    header.update(keys)
    hdu.header.update(header)
    return write_hdul(path, fits.HDUList([hdu]))


def bosz_arrays(n=500, r=2000, seed=0):
    rng = np.random.default_rng(seed)
    wave = 4000.0 * (1 + 1 / r) ** np.arange(n)
    cont = 1e6 * (wave / 5000.0) ** -2
    intensity = cont * rng.uniform(0.5, 1.0, n)
    return wave, intensity, cont


def write_bosz_fits(path, wave, intensity, cont):
    cols = [
        fits.Column(name="Wavelength", format="D", array=wave),
        fits.Column(name="SpecificIntensity", format="D", array=intensity),
        fits.Column(name="Continuum", format="D", array=cont),
    ]
    return write_hdul(path, fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]))


def write_bosz_ascii(path, wave, intensity, cont):
    text = "".join(f"{w:.6f} {i:.9e} {c:.9e}\n" for w, i, c in zip(wave, intensity, cont))
    path = Path(path)
    path.write_bytes(bz2.compress(text.encode()) if path.name.endswith(".bz2") else text.encode())
    return path


def write_ngsl(path, *, n=800, seed=0, unit="erg/s/cm^2/A", drop=(), targname="HD 1"):
    rng = np.random.default_rng(seed)
    wave = 1700.0 + 11.0 * np.arange(n)
    flux = rng.uniform(1e-13, 2e-13, n)
    data = {"WAVELENGTH": wave, "FLUX": flux, "STAT_ERR": flux / 50, "SYS_ERR": flux / 100}
    cols = [
        fits.Column(name=k, format="D", array=v, unit=unit if k != "WAVELENGTH" else "Angstroms")
        for k, v in data.items()
        if k not in drop
    ]
    primary = fits.PrimaryHDU()
    primary.header["TARGNAME"] = targname
    return write_hdul(path, fits.HDUList([primary, fits.BinTableHDU.from_columns(cols)]))
