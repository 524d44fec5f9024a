"""aXe-style FITS export of the flat cube: a round trip on a cube with a known flat."""

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from lamost2csst.core import OUTPUT_WAVE
from lamost2csst.core.flatfield import evaluate, polynomial_terms
from lamost2csst.core.slitless import DETECTOR_SHAPE
from lamost2csst.io.flatcube import FLATCUBE_SCHEMA
from lamost2csst.io.flatcube_fits import export_axe_fits, export_cube_fits, read_axe_flat

ORDER = 2


def cube_with_known_flat():
    """c_0 = 1 and the other coefficients quadratic in wavelength: the flat is a quadratic in w."""
    n_terms = len(polynomial_terms(ORDER))
    t = (OUTPUT_WAVE - 4000.0) / 2500.0
    coeffs = np.zeros((1, 1, OUTPUT_WAVE.size, n_terms))
    coeffs[..., 0] = 1.0
    for k in range(1, n_terms):
        coeffs[0, 0, :, k] = 0.01 * k * (1 + 0.5 * t - 0.3 * t**2)
    fit = ((OUTPUT_WAVE >= 4000) & (OUTPUT_WAVE <= 6500))[None, None, :]
    return xr.Dataset(
        {
            "coeffs": (("band", "detector", "wave_out", "coeff"), coeffs),
            "fit": (("band", "detector", "wave_out"), fit),
        },
        coords={"band": ["GV"], "detector": [2], "wave_out": OUTPUT_WAVE},
        attrs={"order": ORDER, "detector_shape": list(DETECTOR_SHAPE)},
    )


def test_round_trip(tmp_path):
    cube = cube_with_known_flat()
    header = export_axe_fits(cube, tmp_path / "flat.fits", band="GV", detector=2, wave_order=3, binning=512)
    assert header["MAXDEV"] < 1e-9  # a quadratic in wavelength is exact in a cubic
    with fits.open(tmp_path / "flat.fits") as hdul:
        assert len(hdul) == 4 and hdul[0].header["WMIN"] >= 4000 and hdul[0].header["WMAX"] <= 6500
        assert hdul[0].data.shape == (
            int(np.ceil(DETECTOR_SHAPE[0] / 512)),
            int(np.ceil(DETECTOR_SHAPE[1] / 512)),
        )
    x, y = np.array([0.0, 512.0 * 5, 512.0 * 17]), np.array([0.0, 512.0 * 3, 512.0 * 18])
    wave = OUTPUT_WAVE[(OUTPUT_WAVE > 4100) & (OUTPUT_WAVE < 6400)][::20]
    got = read_axe_flat(tmp_path / "flat.fits", x, y, wave)
    inside = np.isin(OUTPUT_WAVE, wave)
    expected = evaluate(cube.coeffs.values[0, 0][inside], x, y, order=ORDER, shape=DETECTOR_SHAPE)
    np.testing.assert_allclose(got, expected, atol=1e-6)  # float32 images


def test_unfit_detector_is_refused(tmp_path):
    cube = cube_with_known_flat()
    cube["fit"][:] = False
    with pytest.raises(ValueError, match="fitted wavelengths"):
        export_axe_fits(cube, tmp_path / "f.fits", band="GV", detector=2)


def test_export_cube_writes_every_fitted_detector_and_reports_the_others(tmp_path):
    cube = xr.concat([cube_with_known_flat(), cube_with_known_flat().assign_coords(detector=[3])], "detector")
    cube["fit"].loc[{"detector": 3}] = False  # detector 3 unfit: skipped, with a message
    cube = cube.assign_coords(band=np.array(["GV"], dtype=object))  # as the job writes it (vlen strings)
    cube.attrs["schema"] = FLATCUBE_SCHEMA
    cube.to_zarr(tmp_path / "cube.zarr", zarr_format=3, consolidated=False)
    messages = []
    written = export_cube_fits(tmp_path / "cube.zarr", tmp_path / "fits", binning=2048, log=messages.append)
    assert written == [str(tmp_path / "fits" / "flat_GV_2.fits")]
    assert messages[0].startswith("no FITS for GV detector 3: ") and "fitted wavelengths" in messages[0]
    assert messages[-1] == f"1 aXe-style FITS flats in {tmp_path / 'fits'}"
    header = fits.getheader(written[0])
    assert header["BAND"] == "GV" and header["DETECTOR"] == 2 and header["BINNING"] == 2048
