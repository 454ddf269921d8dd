"""Pay highdicom's first-use cost ahead of the first export.

The first Segmentation() in a process takes ~1 s more than later ones (highdicom and pydicom
load their standard tables on first use), and much of it holds the GIL: measured here, a
server's /health answered in up to 1.6 s during its first export. Building a one-frame SEG
in a background thread at start-up moves that cost out of every request's way."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from .build import Assembler, build, encode
from .jobs import SeriesInfo
from .labels import resolve
from .mapping import MaskRef, map_masks
from .read import read_seg


def _source() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID = "warm-up"
    ds.PatientName = "Warm^Up"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "000000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def warm_up() -> None:
    """Build, encode and read back a tiny LABELMAP and BINARY SEG."""
    source = _source()
    mask = MaskRef("warm-up", "0000_liver.png", "liver", 0, None)
    mapping = map_masks([mask], [source])
    for kind in ("LABELMAP", "BINARY"):
        assembler = Assembler(mapping, kind)
        assembler.add(mask, np.eye(8, dtype=bool))
        series = SeriesInfo(generate_uid(), generate_uid(), "warm-up")
        # RLE: its encoder and decoder load on first use too (BINARY ignores it).
        seg = build(assembler, [resolve("liver", 0)], None, series, compression="rle")
        read_seg(encode(seg))
