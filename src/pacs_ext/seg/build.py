"""Build a DICOM SEG (highdicom) from masks placed on their source images."""

from __future__ import annotations

import io
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from .jobs import Algorithm, OverlapError, SegmentationType, SeriesInfo
from .labels import Code, LabelStyle, srgb_to_cielab
from .mapping import MaskMapping, MaskRef

# DICOM CID 7162 "Artificial Intelligence": the algorithm family of AUTOMATIC segments.
AI_FAMILY = hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence")


class Assembler:
    """The SEG's pixel array, filled mask by mask (frames: the mapped source images only)."""

    def __init__(self, mapping: MaskMapping, segmentation_type: SegmentationType) -> None:
        self.mapping = mapping
        self.kind = segmentation_type
        used = sorted(set(mapping.frame_of.values()))
        self.used = used
        self.sources = [mapping.sources[i] for i in used]
        self.row_of = {source: row for row, source in enumerate(used)}
        self.number_of = {label: n for n, label in enumerate(mapping.labels, start=1)}
        shape = (len(used), mapping.rows, mapping.columns)
        if segmentation_type == "LABELMAP":
            dtype = np.uint8 if len(mapping.labels) < 256 else np.uint16
            self.array = np.zeros(shape, dtype=dtype)
        else:
            self.array = np.zeros((*shape, len(mapping.labels)), dtype=bool)

    def use_sources(self, sources: Sequence[Dataset]) -> None:
        """Every attribute of the (sorted) source images, for highdicom: the mapping's may
        hold only what placing needs (mapping.SourceSeries)."""
        if len(sources) != len(self.mapping.sources):
            raise ValueError(f"{len(sources)} source images for {len(self.mapping.sources)}")
        for i in self.used:
            if sources[i].SOPInstanceUID != self.mapping.sources[i].SOPInstanceUID:
                raise ValueError(f"source image {i} is not the one the masks were placed on")
        self.sources = [sources[i] for i in self.used]

    def add(self, mask: MaskRef, pixels: np.ndarray) -> None:
        assert mask.label_name is not None
        row = self.row_of[self.mapping.frame_of[mask.object_key]]
        number = self.number_of[mask.label_name]
        if self.kind == "BINARY":
            self.array[row, :, :, number - 1] |= pixels
            return
        frame = self.array[row]
        # Two full-frame passes when nothing overlaps (the usual case): 0.08 ms, not 0.12.
        hit = np.logical_and(pixels, frame)
        if hit.any():
            taken = hit & (frame != number)
            if taken.any():
                other = self.mapping.labels[int(frame[taken][0]) - 1]
                raise OverlapError(
                    f"labels {other!r} and {mask.label_name!r} overlap on {mask.filename} "
                    f"({int(taken.sum())} pixels): a LABELMAP holds one label per pixel; "
                    "export as BINARY"
                )
        np.copyto(frame, number, where=pixels)


def segment_descriptions(
    labels: Sequence[str], styles: Sequence[LabelStyle], algorithm: Algorithm | None
) -> list[hd.seg.SegmentDescription]:
    identification = (
        hd.AlgorithmIdentificationSequence(
            name=algorithm.name, family=AI_FAMILY, version=algorithm.version
        )
        if algorithm
        else None
    )
    out = []
    for number, (label, style) in enumerate(zip(labels, styles, strict=True), start=1):
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=_concept(style.category),
                segmented_property_type=_concept(style.type),
                algorithm_type=(
                    hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
                    if algorithm
                    else hd.seg.SegmentAlgorithmTypeValues.MANUAL
                ),
                algorithm_identification=identification,
                display_color=hd.color.CIELabColor(*srgb_to_cielab(style.colour)),
            )
        )
    return out


def _concept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def build(
    assembler: Assembler,
    styles: Sequence[LabelStyle],
    algorithm: Algorithm | None,
    series: SeriesInfo,
    compression: str = "none",
) -> hd.seg.Segmentation:
    """`compression` "rle": RLE Lossless pixel data (LABELMAP only; BINARY frames are
    bit-packed, which no compressed transfer syntax but JPEG 2000 allows)."""
    labels = assembler.mapping.labels
    syntax = RLELossless if compression == "rle" and assembler.kind == "LABELMAP" else None
    return hd.seg.Segmentation(
        source_images=assembler.sources,
        pixel_array=assembler.array,
        segmentation_type=assembler.kind,
        segment_descriptions=segment_descriptions(labels, styles, algorithm),
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=series.sop_instance_uid,
        instance_number=1,
        manufacturer="pacs-ext",
        manufacturer_model_name="PACS Extension Server",
        software_versions=series.software_version,
        device_serial_number="0",
        series_description=series.series_description[:64] or None,
        content_label="SEGMENTATION",
        content_description=(algorithm.name if algorithm else "manual segmentation")[:64],
        transfer_syntax_uid=syntax or ExplicitVRLittleEndian,
    )


def encode(segmentation: Dataset) -> bytes:
    out = io.BytesIO()
    segmentation.save_as(out, enforce_file_format=True)
    return out.getvalue()
