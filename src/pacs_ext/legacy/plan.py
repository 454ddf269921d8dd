"""Compare the source tree with one listing of the key prefix: what to copy, skip, delete."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread

from ..objects.keys import METADATA_NAME, recovery_prefix
from ..storage.base import ObjectInfo
from .tree import LocalFile, Tree, checksums, part_sizes_for, same_content

HASH_BATCH = 64  # files hashed per thread hop
HASH_THREADS = 4


@dataclass(frozen=True, slots=True)
class Present:
    """A local file whose identical copy is in the bucket."""

    file: LocalFile
    key: str
    size: int
    md5: str
    etag: str


@dataclass
class Plan:
    prefix: str
    tree: Tree
    remote: dict[str, ObjectInfo]
    copy: list[LocalFile] = field(default_factory=list)
    # Keys among `copy` that exist in the bucket with other content (overwritten).
    changed: set[str] = field(default_factory=set)
    present: list[Present] = field(default_factory=list)
    # Objects under the prefix with no local file; --delete removes `delete`, never `kept`.
    delete: list[ObjectInfo] = field(default_factory=list)
    kept: list[ObjectInfo] = field(default_factory=list)

    def key(self, f: LocalFile) -> str:
        return self.prefix + f.rel

    @property
    def copy_bytes(self) -> int:
        return sum(f.size for f in self.copy)


async def compare(
    tree: Tree,
    remote: Mapping[str, ObjectInfo],
    prefix: str,
    part_size: int,
    on_hashed: Callable[[int], None] | None = None,
) -> Plan:
    """Sort local files into copy and present; only same-size pairs are hashed."""
    plan = Plan(prefix=prefix, tree=tree, remote=dict(remote))
    candidates: list[tuple[LocalFile, ObjectInfo]] = []
    for f in tree.files:
        stored = remote.get(prefix + f.rel)
        if stored is None:
            plan.copy.append(f)
        elif stored.size != f.size:
            plan.copy.append(f)
            plan.changed.add(stored.key)
        else:
            candidates.append((f, stored))
    if on_hashed:
        on_hashed(len(tree.files) - len(candidates))  # decided without reading them
    sizes = part_sizes_for((s.etag for _, s in candidates), part_size)
    results: list[tuple[str, dict[int, str]]] = [("", {})] * len(candidates)
    gate = anyio.CapacityLimiter(HASH_THREADS)

    async def hash_batch(start: int) -> None:
        batch = candidates[start : start + HASH_BATCH]
        sums = await anyio.to_thread.run_sync(
            partial(_hash_all, [f.path for f, _ in batch], sizes), limiter=gate
        )
        results[start : start + len(batch)] = sums
        if on_hashed:
            on_hashed(len(batch))

    async with anyio.create_task_group() as tg:
        for start in range(0, len(candidates), HASH_BATCH):
            tg.start_soon(hash_batch, start)
    for (f, stored), (md5, etags) in zip(candidates, results, strict=True):
        if same_content(md5, etags, stored.etag):
            plan.present.append(Present(f, stored.key, stored.size, md5, stored.etag))
        else:
            plan.copy.append(f)
            plan.changed.add(stored.key)
    return plan


def _hash_all(paths: Sequence[Path], sizes: tuple[int, ...]) -> list[tuple[str, dict[int, str]]]:
    out = []
    for p in paths:
        try:
            out.append(checksums(p, sizes))
        except OSError:
            out.append(("", {}))  # unreadable now: planned as a copy, which reports the error
    return out


def remote_only(plan: Plan) -> list[ObjectInfo]:
    """Objects under the prefix without a local file, metadata.json and the recovery
    documents excluded (see delete): the server writes them, and `reindex` needs them."""
    local = {plan.key(f) for f in plan.tree.files}
    recovery = recovery_prefix(plan.prefix)
    return [
        o
        for key, o in sorted(plan.remote.items())
        if key not in local
        and key.rsplit("/", 1)[-1] != METADATA_NAME
        and not key.startswith(recovery)
    ]


def split_deletions(plan: Plan, candidates: Iterable[ObjectInfo], protected: set[str]) -> None:
    """metadata.json is never a candidate: the server writes it, and it is what `reindex`
    rebuilds a group from. Keys the database knows (masks, files declared by groups being
    uploaded) are kept too: they were uploaded through the API, not from this folder."""
    for o in candidates:
        (plan.kept if o.key in protected else plan.delete).append(o)
