"""`pacs-ext migrate SOURCE_DIR`: scan, list once, compare, copy, delete, register."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..storage.base import ObjectInfo, ObjectStorage, StorageError
from . import metadata
from .copy import copy_files
from .plan import Plan, compare, remote_only, split_deletions
from .register import Registration, keys_in_database, known_groups, register
from .tree import Tree, checksums, scan

DELETE_BATCH = 1000


class MigrationError(Exception):
    """The migration cannot start (bad source folder, options); the message says why."""


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None, total_bytes: int | None = None) -> None:
        """A new phase; total files (None: unknown)."""

    def advance(self, files: int = 1, nbytes: int = 0) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int | None = None, total_bytes: int | None = None) -> None:
        return None

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        return None


@dataclass(frozen=True)
class Options:
    source: Path
    key_prefix: str
    concurrency: int = 32
    dry_run: bool = False
    delete: bool = False
    part_size: int = 16 * 1024 * 1024
    follow_symlinks: bool = False  # also files symlinked from outside the source


@dataclass
class Summary:
    dry_run: bool = False
    local_files: int = 0
    # metadata.json files in the folder: not copied as files (the server writes its own).
    metadata_files: int = 0
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    # Objects --delete keeps (in the database) or would remove (dry run: planned).
    kept: int = 0
    to_copy: int = 0
    to_delete: int = 0
    # Dry run: what would be copied (relative paths) and deleted (keys).
    planned_copies: list[str] = field(default_factory=list)
    planned_deletions: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    registration: Registration = field(default_factory=Registration)
    gave_up: str | None = None

    @property
    def files_per_second(self) -> float:
        done = self.copied + self.skipped
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        r = self.registration
        return {
            "dry_run": self.dry_run,
            "local_files": self.local_files,
            "metadata_files": self.metadata_files,
            "copied": self.copied,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "failed": self.failed,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files_per_second, 1),
            "to_copy": self.to_copy,
            "to_delete": self.to_delete,
            "planned_copies": self.planned_copies,
            "planned_deletions": self.planned_deletions,
            "kept": self.kept,
            "ignored": self.ignored,
            "failures": [{"path": p, "reason": why} for p, why in self.failures],
            "registered": {
                "groups": r.groups,
                "masks_added": r.masks_added,
                "masks_updated": r.masks_updated,
                "metadata_written": r.metadata_written,
                "unknown_groups": [f"{a}/{g}" for a, g in sorted(r.unknown)],
                "conflicts": r.conflicts,
                "pending_groups": r.pending,
            },
        }


async def scan_source(source: Path, follow_symlinks: bool = False) -> Tree:
    if not await anyio.to_thread.run_sync(source.is_dir):
        raise MigrationError(f"{source} is not a folder")
    try:
        return await anyio.to_thread.run_sync(scan, source, follow_symlinks)
    except OSError as exc:
        raise MigrationError(f"cannot read {source}: {exc}") from None


async def list_remote(storage: ObjectStorage, prefix: str) -> dict[str, ObjectInfo]:
    return {o.key: o async for o in storage.list_prefix(prefix)}


async def migrate(
    storage: ObjectStorage,
    maker: async_sessionmaker[AsyncSession] | None,
    options: Options,
    progress: Progress | None = None,
) -> Summary:
    progress = progress or NoProgress()
    started = time.perf_counter()
    summary = Summary(dry_run=options.dry_run)
    progress.phase("scanning")
    tree = await scan_source(options.source, options.follow_symlinks)
    summary.local_files = len(tree.files)
    summary.metadata_files = len(tree.metadata)
    summary.ignored = tree.ignored
    progress.phase("listing the bucket")
    remote = await list_remote(storage, options.key_prefix)
    progress.phase("comparing", total=len(tree.files))
    plan = await compare(tree, remote, options.key_prefix, options.part_size, progress.advance)
    candidates = remote_only(plan)
    if options.delete:
        assert maker is not None, "--delete needs the database"
        protected = await keys_in_database(maker, (o.key for o in candidates))
        split_deletions(plan, candidates, protected)
    summary.to_copy, summary.to_delete, summary.kept = (
        len(plan.copy),
        len(plan.delete),
        len(plan.kept),
    )
    summary.skipped = len(plan.present)
    if options.dry_run:
        summary.planned_copies = [f.rel for f in plan.copy]
        summary.planned_deletions = [o.key for o in plan.delete]
        if maker is not None:
            await _dry_registration(maker, plan, summary.registration)
        summary.seconds = time.perf_counter() - started
        return summary

    progress.phase("copying", total=len(plan.copy), total_bytes=plan.copy_bytes)
    copied = await copy_files(
        storage,
        plan.copy,
        options.key_prefix,
        options.concurrency,
        lambda n: progress.advance(1, n),
    )
    summary.copied, summary.bytes, summary.gave_up = (
        len(copied.copied),
        copied.bytes,
        copied.gave_up,
    )
    summary.failures.extend(copied.failed)
    if plan.delete and copied.gave_up is None:
        progress.phase("deleting", total=len(plan.delete))
        summary.deleted = await _delete(storage, plan.delete, summary, progress)
    present = [*plan.present, *copied.copied]
    stored = set(plan.remote) | {p.key for p in copied.copied}
    if maker is not None and copied.gave_up is None:
        progress.phase("registering")
        summary.registration = await register(maker, storage, options.key_prefix, present, stored)
        summary.failures.extend(summary.registration.failed)
        failed_groups = {tuple(p.split("/")[:2]) for p, _ in summary.failures}
        await _copy_unknown_metadata(storage, plan, summary, failed_groups)
    summary.failed = len(summary.failures)
    summary.seconds = time.perf_counter() - started
    return summary


async def _delete(
    storage: ObjectStorage, objects: Sequence[ObjectInfo], summary: Summary, progress: Progress
) -> int:
    deleted = 0
    for i in range(0, len(objects), DELETE_BATCH):
        batch = [o.key for o in objects[i : i + DELETE_BATCH]]
        try:
            await storage.delete_many(batch)
        except StorageError as exc:
            summary.failures.append((batch[0], f"delete failed: {exc}"))
            continue
        deleted += len(batch)
        progress.advance(len(batch))
    return deleted


async def _dry_registration(
    maker: async_sessionmaker[AsyncSession], plan: Plan, result: Registration
) -> None:
    counts: dict[tuple[int, int], int] = {}
    for f in plan.tree.files:
        counts[f.group] = counts.get(f.group, 0) + 1
    known = await known_groups(maker, (g for _, g in counts))
    for (a, g), n in sorted(counts.items()):
        if g not in known:
            result.unknown[(a, g)] = n
        elif known[g] != a:
            result.conflicts.append(f"{a}/{g}: group {g} belongs to annotation {known[g]}")
        else:
            result.groups += 1


async def _copy_unknown_metadata(
    storage: ObjectStorage, plan: Plan, summary: Summary, failed: set[tuple[str, ...]]
) -> None:
    """A group the database does not know keeps the source's metadata.json, when it is one of
    ours (then `reindex` can restore the group); copied last, once its files are all there."""
    for group, local in sorted(plan.tree.metadata.items()):
        if group not in summary.registration.unknown or (str(group[0]), str(group[1])) in failed:
            continue
        key = plan.key(local)
        try:
            data = await anyio.to_thread.run_sync(local.path.read_bytes)
            metadata.parse(data, key, plan.prefix)
        except (OSError, metadata.BadMetadata) as exc:
            summary.ignored.append(f"{local.rel} ({exc})")
            continue
        stored = plan.remote.get(key)
        if stored is not None and stored.size == local.size:
            md5, _ = await anyio.to_thread.run_sync(checksums, local.path)
            if md5 == stored.etag.lower():
                continue
        try:
            await storage.put_file(key, local.path, "application/json")
        except StorageError as exc:
            summary.failures.append((local.rel, str(exc)))
            continue
        summary.registration.metadata_written += 1
