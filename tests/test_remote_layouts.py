"""Vendor layouts from a real Orthanc. Mosaics (Siemens MOSAIC, UIH VFRAME) are not split into
slices over DICOMweb or WADO-URI yet: each entry point must refuse them with a typed error naming
the layout, never return a volume of the wrong shape (it once gave (2, 1, 384, 384) for a
(2, 35, 64, 64) run, and (17, 1, 256, 320) for a UIH DTI, without a word)."""

from __future__ import annotations

import pytest

import medstream as ms
from corpus import qa

MOSAICS = [("siemens-mosaic", "ax", "axasc35"), ("siemens-mosaic", "axmb", "AxAsc36mb2a"),
           ("uih-vframe", "dti_tra_dir16_AP_SaveBySlc__140028")]


@pytest.fixture(scope="module", params=MOSAICS, ids=lambda p: p[-1])
def served(request, orthanc):
    folder = qa(*request.param)
    files = sorted(p for p in folder.iterdir() if p.suffix != ".nii" and p.is_file())
    uploaded = [orthanc.upload(p) for p in files]
    study, series, _ = orthanc.uids(uploaded[0]["ID"])
    sops = [orthanc.uids(u["ID"])[2] for u in uploaded]
    return orthanc, study, series, sops


def _series_url(orthanc, study: str, series: str) -> str:
    return f"{orthanc.dicomweb}/studies/{study}/series/{series}"


@pytest.mark.parametrize("dynamic", [False, True], ids=["3d", "4d"])
def test_dicomweb_mosaic_is_refused_not_misread(served, dynamic):
    orthanc, study, series, _ = served
    with pytest.raises(ms.GeometryError, match="not split into slices"):
        ms.open_volume(_series_url(orthanc, study, series), dynamic=dynamic)


def test_dicomweb_study_url_mosaic_is_refused(served):
    orthanc, study, series, _ = served
    with pytest.raises(ms.GeometryError, match="not split into slices"):
        ms.open_volume(f"{orthanc.dicomweb}/studies/{study}", series=series)


def test_wadouri_mosaic_ids_are_refused(served):
    orthanc, study, series, sops = served
    ids = [f"wadouri:{orthanc.url}/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
           f"&objectUID={sop}&contentType=application/dicom" for sop in sops]
    with pytest.raises(ms.GeometryError, match="not split into slices"):
        ms.open_volume(ids)


def test_describe_source_reports_the_unsplit_mosaic(served):
    orthanc, study, series, _ = served
    found = ms.describe_source(_series_url(orthanc, study, series))
    assert found and all(s.image_ids for s in found)
    with pytest.raises(ms.GeometryError):
        ms.open_volume(found[0].image_ids)
