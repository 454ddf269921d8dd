"""Where slices lie: a series sorted along its normal (the order slice_index counts in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


class GeometryError(ValueError):
    """The series has no usable geometry (missing or mixed orientation, missing positions)."""


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    """The slice normal: cross product of the ImageOrientationPatient directions."""
    import numpy as np  # the server loads numpy at its first export, not at start-up

    values = np.asarray([float(v) for v in orientation], dtype=float)
    if values.shape != (6,):
        raise GeometryError("ImageOrientationPatient must hold 6 numbers")
    return np.cross(values[:3], values[3:])


def sort_along_normal(datasets: Sequence[Dataset]) -> list[Dataset]:
    """The instances ordered by their position along the slice normal (ascending).

    All instances must share one orientation (within 1e-4); ties keep InstanceNumber order."""
    import numpy as np

    if not datasets:
        return []
    first = datasets[0].get("ImageOrientationPatient")
    if first is None:
        raise GeometryError("the source series has no ImageOrientationPatient")
    normal = normal_of(first)
    keyed: list[tuple[float, int, int]] = []
    for i, ds in enumerate(datasets):
        orientation = ds.get("ImageOrientationPatient")
        position = ds.get("ImagePositionPatient")
        if orientation is None or position is None:
            raise GeometryError(
                f"instance {ds.get('SOPInstanceUID', '?')} has no ImageOrientationPatient "
                "or ImagePositionPatient"
            )
        if not np.allclose([float(v) for v in orientation], [float(v) for v in first], atol=1e-4):
            raise GeometryError("the source series mixes slice orientations")
        along = float(np.dot(normal, [float(v) for v in position]))
        keyed.append((along, int(ds.get("InstanceNumber") or 0), i))
    keyed.sort()
    return [datasets[i] for _, _, i in keyed]
