"""`pacs-ext migrate SOURCE_DIR --verify`: which local files have no identical copy in the
bucket yet. Reads every local file (MD5), so a clean report means the folder can go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..storage.base import ObjectStorage
from .plan import compare
from .run import NoProgress, Options, Progress, list_remote, scan_source


@dataclass
class VerifyReport:
    local_files: int = 0
    metadata_files: int = 0  # the folder's metadata.json files: not compared (see migrate)
    in_storage: int = 0
    missing: list[str] = field(default_factory=list)  # no object under the key
    different: list[str] = field(default_factory=list)  # an object with other content
    ignored: list[str] = field(default_factory=list)

    @property
    def local_only(self) -> int:
        return len(self.missing) + len(self.different)

    def as_dict(self) -> dict[str, Any]:
        return {
            "local_files": self.local_files,
            "metadata_files": self.metadata_files,
            "in_storage": self.in_storage,
            "local_only": self.local_only,
            "missing": self.missing,
            "different": self.different,
            "ignored": self.ignored,
        }


async def verify(
    storage: ObjectStorage, options: Options, progress: Progress | None = None
) -> VerifyReport:
    progress = progress or NoProgress()
    progress.phase("scanning")
    tree = await scan_source(options.source, options.follow_symlinks)
    progress.phase("listing the bucket")
    remote = await list_remote(storage, options.key_prefix)
    progress.phase("comparing", total=len(tree.files))
    plan = await compare(tree, remote, options.key_prefix, options.part_size, progress.advance)
    report = VerifyReport(local_files=len(tree.files), in_storage=len(plan.present))
    report.ignored = tree.ignored
    report.metadata_files = len(tree.metadata)
    for f in plan.copy:
        key = plan.key(f)
        (report.different if key in plan.changed else report.missing).append(f.rel)
    return report
