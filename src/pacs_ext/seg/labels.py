"""Label tables: what each segment label is shown and coded as in a SEG.

A table maps a label name (case-insensitive; `-` and spaces count as `_`) to a colour and
coded category/type. Lookup order: the export request's table, the configured default table
(`dicom_seg.label_table`), the built-in table below (SNOMED CT codes for common organs), then
the generic entry: category and type SCT 85756007 "Tissue", colour from a fixed palette."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Code(BaseModel):
    """A coded concept: (value, scheme, meaning), e.g. ("10200004", "SCT", "Liver")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field("SCT", min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)


class LabelEntry(BaseModel):
    """One row of a label table; a missing field comes from the next table in line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    colour: tuple[int, int, int] | None = Field(
        None, description="display colour as sRGB 0-255 (stored as CIELab in the SEG)"
    )
    category: Code | None = None
    type: Code | None = None


LabelTable = dict[str, LabelEntry]


@dataclass(frozen=True, slots=True)
class LabelStyle:
    """A label's resolved colour and codes."""

    colour: tuple[int, int, int]
    category: Code
    type: Code


ANATOMY = Code(value="123037004", scheme="SCT", meaning="Anatomical Structure")
ALTERED = Code(value="49755003", scheme="SCT", meaning="Morphologically Altered Structure")
TISSUE = Code(value="85756007", scheme="SCT", meaning="Tissue")


def _organ(value: str, meaning: str, colour: tuple[int, int, int]) -> LabelEntry:
    return LabelEntry(colour=colour, category=ANATOMY, type=Code(value=value, meaning=meaning))


# Colours after 3D Slicer's GenericAnatomyColors, so organs look as radiologists expect.
BUILTIN: LabelTable = {
    "liver": _organ("10200004", "Liver", (221, 130, 101)),
    "spleen": _organ("78961009", "Spleen", (157, 108, 162)),
    "kidney": _organ("64033007", "Kidney", (185, 102, 83)),
    "left_kidney": _organ("18639004", "Left kidney", (185, 102, 83)),
    "right_kidney": _organ("9846003", "Right kidney", (185, 102, 83)),
    "pancreas": _organ("15776009", "Pancreas", (249, 180, 111)),
    "lung": _organ("39607008", "Lung", (197, 165, 145)),
    "heart": _organ("80891009", "Heart", (206, 110, 84)),
    "aorta": _organ("15825003", "Aorta", (224, 97, 76)),
    "stomach": _organ("69695003", "Stomach", (216, 132, 105)),
    "gallbladder": _organ("28231008", "Gallbladder", (139, 150, 98)),
    "bladder": _organ("89837001", "Urinary bladder", (222, 154, 132)),
    "brain": _organ("12738006", "Brain", (250, 250, 225)),
    "bone": _organ("272673000", "Bone structure", (241, 214, 145)),
    "esophagus": _organ("32849002", "Esophagus", (211, 171, 143)),
    "prostate": _organ("41216001", "Prostate", (230, 158, 140)),
    "tumor": LabelEntry(
        colour=(144, 238, 144),
        category=ALTERED,
        type=Code(value="108369006", meaning="Neoplasm"),
    ),
    "lesion": LabelEntry(
        colour=(255, 255, 0), category=ALTERED, type=Code(value="52988006", meaning="Lesion")
    ),
}
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
)


def normalise(label: str) -> str:
    return label.strip().lower().replace("-", "_").replace(" ", "_")


def resolve(label: str, index: int, *tables: Mapping[str, LabelEntry]) -> LabelStyle:
    """The style of `label` (the index-th segment), looked up in `tables` then BUILTIN."""
    key = normalise(label)
    colour: tuple[int, int, int] | None = None
    category: Code | None = None
    kind: Code | None = None
    for table in (*tables, BUILTIN):
        entry = table.get(key) or next((v for k, v in table.items() if normalise(k) == key), None)
        if entry is None:
            continue
        colour = colour or entry.colour
        category = category or entry.category
        kind = kind or entry.type
    return LabelStyle(
        colour=colour or PALETTE[index % len(PALETTE)],
        category=category or TISSUE,
        type=kind or TISSUE,
    )


def srgb_to_cielab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (0-255) to CIELab (D65 white), the space of RecommendedDisplayCIELabValue."""

    def linear(c: int) -> float:
        v = c / 255.0
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
