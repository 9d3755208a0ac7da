"""Hostile HTJ2K pieces: the resilient (read-past-damage) decoder behind progressive loading must
never hang, crash or raise untyped errors. A fuzzed tile origin in SIZ once sent OpenJPH's
resilient decode into an endless loop; such headers are refused before it runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import imagecodecs
import numpy as np
import pytest

from medstream.codecs.frame import FrameInfo
from medstream.codecs.htj2k import decode_leading, header_problem
from medstream.errors import DecodeError

INFO = FrameInfo(rows=128, columns=128, samples_per_pixel=1, bits_allocated=16, bits_stored=12,
                 pixel_representation=0, photometric_interpretation="MONOCHROME2",
                 transfer_syntax_uid="1.2.840.10008.1.2.4.202")


def _code() -> bytes:
    px = np.random.default_rng(0).normal(1000, 200, (128, 128)).clip(0, 4095).astype(np.uint16)
    return bytes(imagecodecs.htj2k_encode(px, reversible=True, tlm=True,
                                          tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS))


@pytest.mark.parametrize("offset,what", [(39, "tile origin"), (19, "image origin"),
                                         (41, "components"), (42, "precision")])
def test_hostile_header_fields_are_refused_before_decoding(offset, what):
    code = bytearray(_code())
    code[offset] ^= 0x21
    assert header_problem(bytes(code)) is not None, what
    with pytest.raises(DecodeError):
        decode_leading("x", bytes(code[:3000]), INFO)


def test_plain_headers_pass():
    assert header_problem(_code()) is None


def test_mutated_pieces_never_hang_or_crash():
    """500 mutants (cut anywhere, bytes flipped in the header and the packets) decoded in a
    child interpreter: each ends in an array within BitsStored or a typed error."""
    child = textwrap.dedent("""
        import random, sys
        import numpy as np, imagecodecs
        sys.path.insert(0, sys.argv[1])
        from test_htj2k_pieces import INFO, _code
        from medstream.codecs.htj2k import decode_leading
        from medstream.errors import MedstreamError
        code, r = _code(), random.Random(7)
        for i in range(500):
            b = bytearray(code[: r.randint(40, len(code))])
            for _ in range(r.randint(0, 12)):
                j = r.randrange(len(b)) if r.random() < 0.5 else r.randrange(min(len(b), 160))
                b[j] = r.randrange(256)
            try:
                out = decode_leading("x", bytes(b), INFO, r.choice([0, 0, 1, 2]))
                assert 0 <= out.min() and out.max() <= 4095, (i, out.min(), out.max())
            except MedstreamError:
                pass
        print("done")
    """)
    tests = str(__import__("pathlib").Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", child, tests], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]


def test_a_cut_htj2k_frame_is_a_decode_error_not_a_blurred_image(tmp_path):
    """OpenJPH (the fallback decoder) decodes a codestream cut anywhere into a plausible, wrong
    image; a frame without its end-of-codestream marker is refused instead."""
    import pydicom
    from pydicom.encaps import encapsulate

    import medstream as ms
    from series import HTJ2K_RPCL, write_series

    src = write_series(tmp_path / "raw", 1, size=128)[0]
    ds = pydicom.dcmread(src)
    code = bytes(imagecodecs.htj2k_encode(ds.pixel_array, reversible=True))
    ds.PixelData = encapsulate([code[: len(code) * 9 // 10]])  # whole items, a cut codestream
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = HTJ2K_RPCL
    ds.save_as(tmp_path / "cut.dcm", enforce_file_format=True)
    with pytest.raises(ms.DecodeError):
        ms.load_image(ms.dicomfile_image_id(tmp_path / "cut.dcm")).result(30)
