"""Start an export (checked and mapped before the 202), read exports with download URLs."""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from pathlib import Path

import anyio.to_thread
from pydantic import TypeAdapter, ValidationError

from .. import __version__
from ..audit import service as audit
from ..audit.schemas import AuditAction
from ..context import Ctx
from ..core.config import Settings
from ..core.errors import BadGateway, Conflict, NotFound
from ..core.schemas import Pagination
from ..dicomweb import DicomwebError, DicomwebTarget
from ..masks import service as masks
from ..models import SegExport
from ..models.base import utcnow
from ..models.mask_group import COMPLETE
from ..models.seg_export import QUEUED, RUNNING
from ..seg import labels
from ..seg.geometry import GeometryError, sort_along_normal
from ..seg.jobs import Algorithm, SeriesInfo
from ..seg.mapping import MappingError, MaskRef, SourceSeries, map_masks
from ..storage.downloads import DownloadSigner
from . import repository as repo
from .runner import ExportJob, ExportRunner
from .schemas import ExportCreate, ExportRead

MAX_NAMES = 50  # masks a 409 names


def target(settings: Settings) -> DicomwebTarget | None:
    d = settings.dicomweb
    if not d.url:
        return None
    return DicomwebTarget(
        url=d.url,
        auth=d.auth,
        username=d.username,
        password=d.password.get_secret_value(),
        token=d.token.get_secret_value(),
        timeout_seconds=d.timeout_seconds,
    )


@lru_cache(maxsize=8)
def configured_table(path: str) -> labels.LabelTable:
    """The `dicom_seg.label_table` file (read once per path)."""
    if not path:
        return {}
    try:
        raw = json.loads(Path(path).read_text())
        return TypeAdapter(labels.LabelTable).validate_python(raw)
    except (OSError, ValueError, ValidationError) as exc:
        raise Conflict(f"dicom_seg.label_table {path!r} cannot be used: {exc}") from None


def _read_series(pacs: DicomwebTarget, study: str, series: str) -> SourceSeries:
    """The source series from the PACS: pydicom parses here only what ordering and mapping
    read (0.2 s instead of 0.65 s for 350 instances, measured at load 13); the worker process
    parses the rest while it reads the masks."""
    from ..dicomweb.client import series_metadata_json

    return SourceSeries.from_json(series_metadata_json(pacs, study, series))


async def start(
    ctx: Ctx, runner: ExportRunner, annotation_id: int, group_id: int, body: ExportCreate
) -> SegExport:
    annotation, group = await masks.writable_group(ctx, annotation_id, group_id)
    if group.status != COMPLETE:
        raise Conflict(
            f"mask group {group_id} is {group.status.value}: only a complete group exports"
        )
    pacs = target(ctx.settings)
    if pacs is None:
        raise Conflict(
            "no DICOMweb server is configured (dicomweb.url): the source series is read from it"
        )
    if not annotation.series_instance_uid:
        raise Conflict(
            f"annotation {annotation_id} names no series_instance_uid: the source series of "
            "the masks is needed to export a SEG"
        )
    study, series = annotation.study_instance_uid, annotation.series_instance_uid
    cache_key = (pacs.url, study, series)
    cached = runner.cached_series(cache_key)
    # Not cached: the PACS reads its files (~1 s for 350 instances) while the database lists
    # the masks.
    reading = (
        None
        if cached is not None
        else asyncio.ensure_future(anyio.to_thread.run_sync(_read_series, pacs, study, series))
    )
    try:
        rows = await repo.masks_of(ctx.session, group_id)
        if not rows:
            raise Conflict(f"mask group {group_id} has no masks to export")
        if reading is not None:
            sources = await reading
        else:
            assert cached is not None
            sources = cached
    except DicomwebError as exc:
        if exc.status == 404:
            raise Conflict(f"the source series {series} is not on the DICOMweb server") from None
        raise BadGateway(str(exc)) from None
    finally:
        if reading is not None:
            if not reading.done():
                reading.cancel()  # its thread ends on its own; nothing waits for it
            elif not reading.cancelled():
                reading.exception()  # seen (a refusal came first): not logged as lost
    refs = [
        MaskRef(
            object_key=m.object_key,
            filename=m.filename,
            label_name=m.label_name,
            slice_index=m.slice_index,
            sop_instance_uid=m.sop_instance_uid,
            width=m.width,
            height=m.height,
        )
        for m in rows
    ]
    if not sources.placing:
        raise Conflict(f"the source series {series} is not on the DICOMweb server")
    try:
        ordered = sort_along_normal(sources.placing)
        series_key = runner.keep_series(cache_key, sources)
        mapping = map_masks(refs, ordered, body.slice_index_base)
    except GeometryError as exc:
        raise Conflict(f"the source series cannot be used: {exc}") from None
    except MappingError as exc:
        raise Conflict(
            f"{exc} (first {min(len(exc.masks), MAX_NAMES)} named in `masks`)",
            extra={"masks": exc.masks[:MAX_NAMES], "count": len(exc.masks)},
        ) from None
    tables = [body.label_table or {}, configured_table(ctx.settings.dicom_seg.label_table)]
    styles = [labels.resolve(label, i, *tables) for i, label in enumerate(mapping.labels)]
    algorithm = (
        Algorithm(name=group.model_name, version=group.version or "unknown")
        if group.model_name
        else None
    )
    export = SegExport(
        group_id=group_id,
        annotation_id=annotation_id,
        created_by=ctx.principal.subject,
        format=body.format,
        segmentation_type=body.segmentation_type,
        store=body.store,
        status=QUEUED,
        phase=QUEUED,
        progress=0.0,
        stored=False,
        timings={},
    )
    ctx.session.add(export)
    await ctx.session.flush()
    await audit.record(
        ctx,
        AuditAction.MASK_GROUP_EXPORT,
        annotation_id=annotation_id,
        group_id=group_id,
        detail={
            "export_id": export.id,
            "segmentation_type": body.segmentation_type,
            "store": body.store,
        },
    )
    from pydicom.uid import generate_uid  # loaded by the first export, not at start-up

    job = ExportJob(
        export_id=export.id,
        annotation_id=annotation_id,
        group_id=group_id,
        mapping=mapping,
        segmentation_type=body.segmentation_type,
        styles=styles,
        algorithm=algorithm,
        series=SeriesInfo(
            series_instance_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            series_description=group.group_name or f"mask group {group_id}",
            software_version=__version__,
        ),
        store=body.store,
        target=pacs,
        series_key=series_key,
        source_json=sources.json,
        source_order=sources.order_of(mapping.sources),
    )
    # The runner updates this row from its own sessions: it must exist for them first.
    await ctx.session.commit()
    runner.submit(job)
    return export


async def get(ctx: Ctx, annotation_id: int, group_id: int, export_id: int) -> SegExport:
    await masks.readable_group(ctx, annotation_id, group_id)
    export = await repo.get(ctx.session, group_id, export_id)
    if export is None:
        raise NotFound(f"export {export_id} not found in mask group {group_id}")
    return export


async def list_for_group(
    ctx: Ctx, annotation_id: int, group_id: int, page: Pagination
) -> tuple[list[SegExport], int]:
    await masks.readable_group(ctx, annotation_id, group_id)
    rows, total = await repo.list_for_group(ctx.session, group_id, page.limit, page.offset)
    return list(rows), total


async def to_read(ctx: Ctx, downloads: DownloadSigner, export: SegExport) -> ExportRead:
    read = ExportRead.model_validate(export)
    if export.status in (QUEUED, RUNNING) and utcnow() - export.updated_at > repo.STALE_AFTER:
        # The sweep (runner.py) has not come by yet.
        read.status = "failed"
        read.error = repo.STALE_ERROR
    if export.object_key:
        await masks.prepare_signing(ctx)
        signed = await downloads.sign_download(
            export.object_key,
            ctx.settings.signed_url.default_ttl,
            content_disposition=f'attachment; filename="seg-{export.id}.dcm"',
            content_type="application/dicom",
        )
        read.download_url, read.download_expires_at = signed.url, signed.expires_at
        await audit.record_signed_urls(
            ctx,
            "GET",
            [audit.IssuedUrl(export.object_key, signed.expires_at)],
            annotation_id=export.annotation_id,
            group_id=export.group_id,
        )
    return read
