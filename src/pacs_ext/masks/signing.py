"""How many upload URLs a request signs, and the caps on them (signed_url.* settings).

A multipart file's part URLs come in pages: the first `part_urls_per_page` with the
declaration, the next ones when upload-urls asks for them (`parts: {filename: {from,
count}}`). Every URL counts against the request's cap and the group's lifetime cap, and
both are checked before anything is signed or any multipart upload is started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..core.config import Settings
from ..core.errors import Conflict, InvalidInput
from ..models import MaskGroup
from ..storage.base import ObjectStorage
from .multipart import part_size_for
from .schemas import FileSpec, PartRange
from .uploads import part_sizes, uses_multipart

# (first part number, count) of the part URLs to sign for a multipart file; None: single PUT.
Page = tuple[int, int] | None


def plan(
    settings: Settings,
    storage: ObjectStorage,
    specs: Sequence[FileSpec],
    ranges: Mapping[str, PartRange] | None = None,
) -> tuple[list[Page], int]:
    """The page of part URLs each file gets, and how many URLs that is in all."""
    page_size = settings.signed_url.part_urls_per_page
    wanted = dict(ranges or {})
    unknown = sorted(set(wanted) - {s.name for s in specs})
    if unknown:
        raise InvalidInput(
            f"parts: {unknown[0]!r} is not among the files of this request; declare it "
            "again in files (unchanged, its upload is kept) to get more of its part URLs",
            extra={"field": "parts"},
        )
    pages: list[Page] = []
    total = 0
    for i, spec in enumerate(specs):
        asked = wanted.get(spec.name)
        if not uses_multipart(settings, storage, spec.size):
            if asked is not None:
                raise InvalidInput(
                    f"parts[{spec.name!r}]: this file is uploaded with a single PUT, not in parts",
                    extra={"field": "parts"},
                )
            pages.append(None)
            total += 1
            continue
        count_all = len(part_sizes(spec.size, part_size_for(settings, spec, i)))
        first, count = (asked.start, asked.count) if asked else (1, page_size)
        if first > count_all:
            raise InvalidInput(
                f"parts[{spec.name!r}].from: {first} is past the last part ({count_all})",
                extra={"field": "parts"},
            )
        count = min(count, page_size, count_all - first + 1)
        pages.append((first, count))
        total += count
    return pages, total


def check_caps(settings: Settings, group: MaskGroup, urls: int) -> None:
    """Refuse, before signing anything, a request over the per-request or per-group cap."""
    per_request = settings.signed_url.max_urls_per_request
    if urls > per_request:
        raise InvalidInput(
            f"this request would sign {urls} upload URLs; at most {per_request} per request "
            "(signed_url.max_urls_per_request): declare fewer files per request (upload-urls "
            "adds files to a group), or ask for fewer part URLs (parts: {filename: {from, count}})",
            extra={"field": "files", "limit": per_request, "urls": urls},
        )
    per_group = settings.signed_url.max_urls_per_group
    signed = group.urls_signed or 0
    if signed + urls > per_group:
        raise Conflict(
            f"mask group {group.id} has had {signed} upload URLs signed; {urls} more would pass "
            f"its limit of {per_group} (signed_url.max_urls_per_group): complete it and start "
            "another group",
            extra={"limit": per_group, "urls_signed": signed, "urls": urls},
        )
