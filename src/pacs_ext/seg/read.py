"""Read a DICOM SEG (BINARY or LABELMAP) back into per-slice, per-label masks."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .geometry import normal_of

SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
}


class SegReadError(ValueError):
    """Not a DICOM SEG this reader understands."""


@dataclass(slots=True)
class SegSlice:
    """One source image's masks: label name → (rows, columns) bool array."""

    sop_instance_uid: str
    slice_index: int
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(slots=True)
class SegContents:
    study_instance_uid: str
    series_instance_uid: str  # the SEG's own series
    source_series_instance_uid: str | None
    series_description: str
    segmentation_type: str
    labels: dict[int, str]  # segment number → label (Background excluded)
    algorithm_name: str | None
    algorithm_version: str | None
    slices: list[SegSlice]

    def iter_masks(self) -> Iterator[tuple[SegSlice, str, np.ndarray]]:
        for s in self.slices:
            for label, mask in s.masks.items():
                yield s, label, mask


def safe_label(label: str, number: int) -> str:
    """A segment label as a mask label_name ([A-Za-z0-9._-], no leading dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", label.strip()).strip("._")[:100]
    return cleaned or f"segment_{number}"


def read_seg(data: bytes, source_order: Sequence[str] | None = None) -> SegContents:
    """The SEG's masks, one SegSlice per source image that has any non-empty mask.

    slice_index: the source image's place in `source_order` (SOP Instance UIDs of the source
    series sorted along its normal) when given, else its rank along the normal among the
    SEG's own frames."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise SegReadError(f"not a DICOM file ({exc})") from None
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise SegReadError(f"not a DICOM SEG (SOP class {ds.get('SOPClassUID', 'none')})")
    kind = str(ds.get("SegmentationType", ""))
    if kind not in ("BINARY", "LABELMAP"):
        raise SegReadError(f"segmentation type {kind or 'none'} is not BINARY or LABELMAP")
    labels: dict[int, str] = {}
    algorithm_name = algorithm_version = None
    for item in ds.SegmentSequence:
        number = int(item.SegmentNumber)
        label = str(item.get("SegmentLabel", ""))
        if kind == "LABELMAP" and number == 0:
            continue  # highdicom's "Background"
        labels[number] = safe_label(label, number)
        ident = item.get("SegmentationAlgorithmIdentificationSequence")
        if ident and algorithm_name is None:
            algorithm_name = str(ident[0].get("AlgorithmName", "")) or None
            algorithm_version = str(ident[0].get("AlgorithmVersion", "")) or None
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames.shape[0]:
        raise SegReadError("PerFrameFunctionalGroupsSequence does not match NumberOfFrames")
    normal = _normal(ds)
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    slices: dict[str, SegSlice] = {}
    along: dict[str, float] = {}
    for i, item in enumerate(per_frame):
        uid = _source_uid(_group(item, shared, "DerivationImageSequence"), i)
        plane = _group(item, shared, "PlanePositionSequence")
        if normal is not None and plane is not None:
            position = [float(v) for v in plane[0].ImagePositionPatient]
            along[uid] = float(np.dot(normal, position))
        frame = frames[i]
        if kind == "BINARY":
            # A SEG of one segment may say so once, in the shared functional groups.
            segment = _group(item, shared, "SegmentIdentificationSequence")
            if segment is None:
                raise SegReadError(f"frame {i + 1} names no segment")
            number = int(segment[0].ReferencedSegmentNumber)
            _put(slices, uid, labels.get(number), frame != 0)
        else:
            for number in np.unique(frame):
                if int(number) in labels:
                    _put(slices, uid, labels[int(number)], frame == number)
    order = {uid: k for k, uid in enumerate(source_order or ())}
    if source_order is None:
        ranked = sorted(slices, key=lambda u: along.get(u, 0.0))
        order = {uid: k for k, uid in enumerate(ranked)}
    missing = [uid for uid in slices if uid not in order]
    if missing:
        raise SegReadError(f"{len(missing)} frame(s) reference images not in the source series")
    result = sorted(slices.values(), key=lambda s: order[s.sop_instance_uid])
    for s in result:
        s.slice_index = order[s.sop_instance_uid]
    referenced = ds.get("ReferencedSeriesSequence")
    return SegContents(
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        source_series_instance_uid=str(referenced[0].SeriesInstanceUID) if referenced else None,
        series_description=str(ds.get("SeriesDescription", "")),
        segmentation_type=kind,
        labels=labels,
        algorithm_name=algorithm_name,
        algorithm_version=algorithm_version,
        slices=result,
    )


def _put(slices: dict[str, SegSlice], uid: str, label: str | None, mask: np.ndarray) -> None:
    if label is None or not mask.any():
        return
    entry = slices.setdefault(uid, SegSlice(sop_instance_uid=uid, slice_index=0))
    previous = entry.masks.get(label)
    entry.masks[label] = mask if previous is None else previous | mask


def _normal(ds: Dataset) -> np.ndarray | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PlaneOrientationSequence" in shared[0]:
        return normal_of(shared[0].PlaneOrientationSequence[0].ImageOrientationPatient)
    return None


def _group(item: Dataset, shared: Dataset, name: str) -> Any:
    """A functional group of a frame: its own, else the one shared by every frame."""
    value = item.get(name)
    return value if value is not None else shared.get(name)


def _source_uid(derivation: Any, frame: int) -> str:
    try:
        return str(derivation[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
    except (AttributeError, IndexError, TypeError):
        raise SegReadError(f"frame {frame + 1} names no source image") from None
