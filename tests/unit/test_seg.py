"""DICOM SEG without servers: ordering, mapping, labels, build and read back (fast layer)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from fixtures.dicom import ct_series, label_masks, shuffled
from pacs_ext.seg import labels
from pacs_ext.seg.build import Assembler, build, encode
from pacs_ext.seg.geometry import GeometryError, sort_along_normal
from pacs_ext.seg.jobs import Algorithm, OverlapError, PixelError, SeriesInfo
from pacs_ext.seg.mapping import (
    PLACING_TAGS,
    MappingError,
    MaskRef,
    SourceSeries,
    map_masks,
    parse_sources,
)
from pacs_ext.seg.pixels import decode_mask, encode_mask
from pacs_ext.seg.read import SegReadError, read_seg, safe_label


def _refs(masks: dict[tuple[int, str], np.ndarray]) -> list[MaskRef]:
    return [
        MaskRef(f"k/{s}/{label}", f"{s:04d}_{label}.png", label, s, None) for (s, label) in masks
    ]


def test_series_sorts_along_its_normal_not_by_list_order() -> None:
    series = ct_series(slices=9, rows=8, columns=8)
    ordered = sort_along_normal(shuffled(series))
    assert [str(d.SOPInstanceUID) for d in ordered] == series.sop_uids


def test_a_series_with_a_tilted_orientation_sorts_along_that_normal() -> None:
    series = ct_series(slices=4, rows=8, columns=8)
    for i, ds in enumerate(series.instances):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal: normal is +y
        ds.ImagePositionPatient = [0.0, 10.0 - 3 * i, 0.0]
    ordered = sort_along_normal(series.instances)
    assert [str(d.SOPInstanceUID) for d in ordered] == series.sop_uids[::-1]


def test_mixed_orientations_are_refused() -> None:
    series = ct_series(slices=3, rows=8, columns=8)
    series.instances[1].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    with pytest.raises(GeometryError, match="mixes"):
        sort_along_normal(series.instances)


def test_mapping_names_every_mask_that_cannot_map() -> None:
    series = ct_series(slices=4, rows=8, columns=8)
    refs = [
        MaskRef("a", "0003_liver.png", "liver", 3, None),
        MaskRef("b", "0004_liver.png", "liver", 4, None),
        MaskRef("c", "x.png", "liver", None, "1.2.3.4"),
        MaskRef("d", "y.png", "liver", None, series.sop_uids[0]),
    ]
    with pytest.raises(MappingError) as caught:
        map_masks(refs, series.instances)
    assert caught.value.masks == ["0004_liver.png", "x.png"]
    mapping = map_masks(refs[1:2], series.instances, slice_index_base=1)
    assert mapping.frame_of == {"b": 3}


def test_mapping_refuses_masks_without_label_or_of_another_size() -> None:
    series = ct_series(slices=2, rows=8, columns=8)
    with pytest.raises(MappingError, match="no label_name"):
        map_masks([MaskRef("a", "a.png", None, 0, None)], series.instances)
    with pytest.raises(MappingError, match="differ in size") as caught:
        map_masks([MaskRef("a", "0000_x.png", "x", 0, None, 16, 8)], series.instances)
    assert caught.value.masks == ["0000_x.png (16x8)"]


def test_the_server_places_masks_on_a_few_attributes_and_the_worker_builds_on_all() -> None:
    """SourceSeries: ordering and mapping read 7 attributes an image; the worker process
    parses all of them, in the mapping's order, and the SEG is the same."""
    series = ct_series(slices=5, rows=8, columns=8)
    items = [ds.to_json_dict() for ds in shuffled(series)]
    for item in items:
        del item["7FE00010"]  # WADO-RS metadata: no pixel data
    source = SourceSeries.from_json(items)
    assert all(set(ds.keys()) <= {Tag(t) for t in PLACING_TAGS} for ds in source.placing)
    masks = label_masks(series, ["liver", "spleen"], range(1, 4))
    mapping = map_masks(_refs(masks), sort_along_normal(source.placing))
    order = source.order_of(mapping.sources)
    full = parse_sources(source.json)
    assert [str(full[i].SOPInstanceUID) for i in order] == series.sop_uids
    assert full[0].PatientName == series.instances[0].PatientName

    assembler = Assembler(mapping, "LABELMAP")
    for ref in _refs(masks):
        assert ref.slice_index is not None
        assert ref.label_name is not None
        assembler.add(ref, masks[(ref.slice_index, ref.label_name)])
    with pytest.raises(ValueError, match="not the one the masks were placed on"):
        assembler.use_sources(list(reversed([full[i] for i in order])))
    assembler.use_sources([full[i] for i in order])
    styles = [labels.resolve(label, i) for i, label in enumerate(mapping.labels)]
    seg = build(assembler, styles, None, SeriesInfo(generate_uid(), generate_uid(), "s"))
    contents = read_seg(encode(seg), series.sop_uids)
    got = {(s.slice_index, label): m for s, label, m in contents.iter_masks()}
    assert set(got) == set(masks)
    assert seg.PatientName == series.instances[0].PatientName


def test_labels_resolve_request_then_configured_then_builtin_then_generic() -> None:
    request = {"Liver": labels.LabelEntry(colour=(1, 2, 3))}
    configured = {
        "liver": labels.LabelEntry(colour=(9, 9, 9)),
        "blob": labels.LabelEntry(type=labels.Code(value="123", scheme="99LOCAL", meaning="Blob")),
    }
    liver = labels.resolve("liver", 0, request, configured)
    assert liver.colour == (1, 2, 3)
    assert liver.type.value == "10200004"  # the built-in code fills what the tables leave
    assert labels.resolve("Left-Kidney", 0).type.value == "18639004"
    blob = labels.resolve("blob", 2, request, configured)
    assert blob.type.scheme == "99LOCAL"
    assert blob.category == labels.TISSUE
    unknown = labels.resolve("thing", 1)
    assert unknown.type == labels.TISSUE
    assert unknown.colour == labels.PALETTE[1]


def test_cielab_of_white_black_and_red() -> None:
    assert labels.srgb_to_cielab((255, 255, 255)) == pytest.approx((100, 0, 0), abs=0.01)
    assert labels.srgb_to_cielab((0, 0, 0)) == pytest.approx((0, 0, 0), abs=0.01)
    assert labels.srgb_to_cielab((255, 0, 0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.05)


def test_png_masks_decode_by_nonzero_and_check_their_size() -> None:
    mask = np.zeros((6, 5), dtype=bool)
    mask[1:3, 2:4] = True
    assert np.array_equal(decode_mask(encode_mask(mask), "m.png", 6, 5), mask)
    with pytest.raises(PixelError, match="5x6, its source image 6x5"):
        decode_mask(encode_mask(mask), "m.png", 5, 6)
    with pytest.raises(PixelError, match="not a readable image"):
        decode_mask(b"not a png", "m.png", 6, 5)


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "RGB", "LA", "1"])
def test_every_png_kind_decodes_as_pillow_reads_it(mode: str) -> None:
    """8-bit grey goes through libspng, the rest through Pillow: the same pixels either way
    (a pixel is in the mask when its grey value, or palette index, is not zero)."""
    grey = np.zeros((7, 9), dtype=np.uint8)
    grey[1:4, 2:6] = 200
    grey[5, 0] = 1
    image = Image.fromarray(grey, mode="L").convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    data = out.getvalue()
    with Image.open(io.BytesIO(data)) as opened:
        expected = (
            np.asarray(
                opened if opened.mode in ("1", "L", "I", "I;16", "P") else opened.convert("L")
            )
            != 0
        )
    assert np.array_equal(decode_mask(data, "m.png", 7, 9), expected)
    with pytest.raises(PixelError, match="9x7, its source image 7x9"):
        decode_mask(data, "m.png", 9, 7)


def test_a_damaged_grey_png_is_a_pixel_error() -> None:
    data = encode_mask(np.eye(16, dtype=bool))
    cut = data[: len(data) // 2] + bytes(8)  # the header is whole, the pixel stream is not
    with pytest.raises(PixelError, match=r"m\.png is not a readable image"):
        decode_mask(cut, "m.png", 16, 16)


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
def test_build_then_read_gives_the_same_masks(kind: str) -> None:
    series = ct_series(slices=6, rows=16, columns=12)
    masks = label_masks(series, ["liver", "spleen", "tumor"], range(1, 5))
    mapping = map_masks(_refs(masks), sort_along_normal(shuffled(series)))
    assembler = Assembler(mapping, kind)  # type: ignore[arg-type]
    for ref in mapping.masks:
        assembler.add(ref, masks[(ref.slice_index, ref.label_name)])  # type: ignore[index]
    styles = [labels.resolve(label, i) for i, label in enumerate(mapping.labels)]
    uids = SeriesInfo(generate_uid(), generate_uid(), "organs", software_version="t")
    data = encode(build(assembler, styles, Algorithm("unet", "2"), uids))
    contents = read_seg(data, series.sop_uids)
    assert contents.segmentation_type == kind
    assert sorted(contents.labels.values()) == ["liver", "spleen", "tumor"]
    assert (contents.algorithm_name, contents.algorithm_version) == ("unet", "2")
    assert contents.source_series_instance_uid == series.series_instance_uid
    got = {(s.slice_index, label): m for s, label, m in contents.iter_masks()}
    assert set(got) == set(masks)
    for key, mask in masks.items():
        assert np.array_equal(got[key], mask)
    # Without the source order, slice_index ranks the SEG's own frames (slices 1-4 → 0-3).
    ranked = read_seg(data)
    assert sorted({s.slice_index for s in ranked.slices}) == [0, 1, 2, 3]


def test_a_labelmap_refuses_overlapping_labels() -> None:
    series = ct_series(slices=1, rows=4, columns=4)
    refs = [MaskRef("a", "0000_a.png", "a", 0, None), MaskRef("b", "0000_b.png", "b", 0, None)]
    assembler = Assembler(map_masks(refs, series.instances), "LABELMAP")
    assembler.add(refs[0], np.ones((4, 4), dtype=bool))
    with pytest.raises(OverlapError, match=r"labels 'a' and 'b' overlap on 0000_b\.png"):
        assembler.add(refs[1], np.eye(4, dtype=bool))


def test_reading_something_else_is_a_clear_error() -> None:
    with pytest.raises(SegReadError, match="not a DICOM file"):
        read_seg(b"hello")
    series = ct_series(slices=1, rows=4, columns=4)
    from fixtures.dicom import to_bytes

    with pytest.raises(SegReadError, match="not a DICOM SEG"):
        read_seg(to_bytes(series.instances[0]))


def test_segment_labels_become_safe_label_names() -> None:
    assert safe_label("Left Kidney (L)", 1) == "Left_Kidney_L"
    assert safe_label("...", 4) == "segment_4"
