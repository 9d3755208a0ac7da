"""The keyword table the classic-file path reads without pydicom (dicom/keywords.py) is
pydicom's dictionary, entry for entry, and covers every keyword the header readers use; a
keyword or VR outside it still answers as pydicom does (pydicom is imported for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword

from medstream.dicom import keywords

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import dicom_keywords  # noqa: E402


def test_every_entry_is_pydicoms():
    assert len(keywords.KEYWORDS) > 100
    for keyword, (tag, vr) in keywords.KEYWORDS.items():
        assert tag_for_keyword(keyword) == tag, keyword
        assert dictionary_VR(tag) == vr, keyword


def test_the_table_covers_every_keyword_the_readers_use():
    """Regenerate with scripts/dicom_keywords.py when this fails."""
    assert dicom_keywords.used_keywords() == set(keywords.KEYWORDS)


def test_lookups_outside_the_table_give_pydicoms_answers():
    assert "KVP" not in keywords.KEYWORDS and "PatientBirthDate" not in keywords.KEYWORDS
    for keyword in ("KVP", "PatientBirthDate", "ReferencedImageSequence", "NoSuchKeyword"):
        assert keywords.tag_for_keyword(keyword) == tag_for_keyword(keyword)
    tag = keyword_dict["KVP"]
    assert keywords.known_vr(tag) is None and keywords.dictionary_vr(tag) == dictionary_VR(tag)
    assert keywords.tag_for_keyword("Rows") == 0x00280010
    assert keywords.dictionary_vr(0x00280106) == "US or SS"


def test_table_lookups_do_not_import_pydicom():
    code = ("import sys; from medstream.dicom import keywords as k; "
            "assert k.tag_for_keyword('ImagePositionPatient') == 0x00200032; "
            "assert k.dictionary_vr(0x00280030) == 'DS'; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'pydicom'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
