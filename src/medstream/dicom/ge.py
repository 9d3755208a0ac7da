"""GE private elements that change how pixels must be read.

GE's ``epi_pepolar`` research EPI (ABCD and others) stores the volumes acquired with reversed
phase-encoding polarity with their rows reversed, and says so only in private elements: the pulse
sequence name (0019,109C) and user data 12 (0019,10B3): 1 = every volume reversed, 2 = the first of
each pair, 3 = the second of each pair. dcm2niix flips those volumes back. medstream does not
guess which volumes a series holds: it names the elements in a ``GeometryWarning``, so such a volume
is never passed off as a normal one.
"""

from __future__ import annotations

from typing import Any

PULSE_SEQUENCE_NAME = "0019109C"
USER_DATA_12 = "001910B3"
_PATTERNS = {1: "every volume", 2: "the first volume of each pair", 3: "the second volume of "
             "each pair"}


def _private(ds: Any, tag: str) -> Any:
    """A private element's value from a pydicom dataset, a compact header or DICOM JSON."""
    try:
        if hasattr(ds, "data_element"):  # pydicom: private tags by number
            elem = ds.get(int(tag, 16))
            return None if elem is None else elem.value
        return ds.get(tag)
    except (KeyError, TypeError, ValueError):
        return None


def pepolar_warning(ds: Any) -> str | None:
    """The warning for a GE reversed-polarity EPI, or None for anything else."""
    manufacturer = str(ds.get("Manufacturer") or "")
    if not manufacturer.upper().startswith("GE"):
        return None
    name = _private(ds, PULSE_SEQUENCE_NAME)
    if isinstance(name, bytes):
        name = name.decode("latin-1", "replace")
    if not name or "epi_pepolar" not in str(name).lower():
        return None
    code = _private(ds, USER_DATA_12)
    try:
        pattern = _PATTERNS.get(int(float(code.decode("latin-1") if isinstance(code, bytes)
                                            else code)))
    except (TypeError, ValueError):
        pattern = None
    which = f"{pattern} is" if pattern else "some volumes are"
    return (f"GE reversed phase-encoding EPI (epi_pepolar, user data 12 (0019,10B3) = {code}): "
            f"{which} stored with rows reversed (flipped along the phase-encoding direction), "
            "and medstream does not correct it; dcm2niix flips those volumes back")
