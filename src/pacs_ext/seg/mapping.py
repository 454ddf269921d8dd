"""Which source image each mask belongs to.

A mask maps by its `sop_instance_uid` when it declares one, else by `slice_index` into the
source series sorted along its normal (geometry.py): index `base` is the first slice. Every
mask must map, and its declared width/height must equal the image's Columns/Rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# What ordering and mapping read of each source image (SOP Class and Instance UID, Image
# Position and Orientation, Instance Number, Rows, Columns); highdicom reads the rest.
PLACING_TAGS = frozenset(
    ("00080016", "00080018", "00200032", "00200037", "00200013", "00280010", "00280011")
)


@dataclass(frozen=True, slots=True, eq=False)
class SourceSeries:
    """A source series as read from the PACS: `placing`, each image's few attributes that
    order and map masks (pydicom parses 7 attributes an image 3-4 times faster than all of
    them); `json`, all of them as DICOM JSON (same order), which the worker process parses
    for highdicom while it reads the masks."""

    placing: list[Dataset]
    json: bytes

    @classmethod
    def from_json(cls, items: Sequence[dict[str, Any]]) -> SourceSeries:
        from pydicom.dataset import Dataset  # the server loads pydicom at its first export

        placing = [
            Dataset.from_json({k: v for k, v in item.items() if k in PLACING_TAGS})
            for item in items
        ]
        return cls(placing, json.dumps(items, separators=(",", ":")).encode())

    def order_of(self, ordered: Sequence[Dataset]) -> list[int]:
        """The index in `placing` (and in `json`) of each of `ordered`, datasets of `placing`."""
        index = {id(ds): i for i, ds in enumerate(self.placing)}
        return [index[id(ds)] for ds in ordered]


def parse_sources(raw: bytes) -> list[Dataset]:
    """A SourceSeries' `json` as datasets, every attribute (in the order the PACS sent)."""
    from pydicom.dataset import Dataset

    return [Dataset.from_json(item) for item in json.loads(raw)]


@dataclass(frozen=True, slots=True)
class MaskRef:
    """What the mapping needs to know about one stored mask."""

    object_key: str
    filename: str
    label_name: str | None
    slice_index: int | None
    sop_instance_uid: str | None
    width: int | None = None
    height: int | None = None


@dataclass(slots=True)
class MaskMapping:
    """Masks placed on the (sorted) source images; `frame_of[object_key]` is an index into
    `sources`, `labels` the segment labels in segment-number order (1, 2, ...)."""

    sources: list[Dataset]
    frame_of: dict[str, int]
    labels: list[str]
    masks: list[MaskRef] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.sources[0].Rows)

    @property
    def columns(self) -> int:
        return int(self.sources[0].Columns)


class MappingError(ValueError):
    """Masks that cannot be placed on the source series; `masks` names them."""

    def __init__(self, message: str, masks: Sequence[str]) -> None:
        super().__init__(message)
        self.masks = list(masks)


def map_masks(
    masks: Sequence[MaskRef], sources: Sequence[Dataset], slice_index_base: int = 0
) -> MaskMapping:
    """Place every mask on a source image, or raise MappingError naming those that cannot be."""
    if not sources:
        raise MappingError("the source series has no instances", [m.filename for m in masks])
    by_uid = {str(ds.SOPInstanceUID): i for i, ds in enumerate(sources)}
    frame_of: dict[str, int] = {}
    unmapped: list[str] = []
    unlabelled: list[str] = []
    for m in masks:
        if not m.label_name:
            unlabelled.append(m.filename)
            continue
        if m.sop_instance_uid:
            index = by_uid.get(m.sop_instance_uid)
        elif m.slice_index is not None and 0 <= m.slice_index - slice_index_base < len(sources):
            index = m.slice_index - slice_index_base
        else:
            index = None
        if index is None:
            unmapped.append(m.filename)
        else:
            frame_of[m.object_key] = index
    if unlabelled:
        raise MappingError(
            f"{len(unlabelled)} mask(s) have no label_name (a segment needs one)", unlabelled
        )
    if unmapped:
        raise MappingError(
            f"{len(unmapped)} mask(s) map to no image of the source series ({len(sources)} "
            f"instances; slice_index counts from {slice_index_base} along the slice normal, "
            "sop_instance_uid must be one of the series')",
            unmapped,
        )
    mismatched = [
        f"{m.filename} ({m.width}x{m.height})"
        for m in masks
        if m.width is not None
        and m.height is not None
        and (
            m.width != int(sources[frame_of[m.object_key]].Columns)
            or m.height != int(sources[frame_of[m.object_key]].Rows)
        )
    ]
    if mismatched:
        first = sources[0]
        raise MappingError(
            f"{len(mismatched)} mask(s) differ in size from their source image "
            f"({int(first.Columns)}x{int(first.Rows)} columns x rows)",
            mismatched,
        )
    labels = sorted({m.label_name for m in masks if m.label_name})
    return MaskMapping(sources=list(sources), frame_of=frame_of, labels=labels, masks=list(masks))
