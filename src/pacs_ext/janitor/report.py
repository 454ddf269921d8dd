"""What one janitor run found and did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

SAMPLE_LIMIT = 100  # entries listed per finding; the counts are always complete


@dataclass
class Finding:
    """How many of one kind were found, how many were acted on, and some examples."""

    found: int = 0
    acted: int = 0
    failed: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, sample: dict[str, Any]) -> None:
        self.found += 1
        if len(self.samples) < SAMPLE_LIMIT:
            self.samples.append(sample)


@dataclass
class JanitorReport:
    apply: bool
    grace_seconds: int
    started_at: datetime
    finished_at: datetime | None = None
    expired_groups: Finding = field(default_factory=Finding)
    pending_deletions: Finding = field(default_factory=Finding)
    stale_multipart_uploads: Finding = field(default_factory=Finding)
    orphan_objects: Finding = field(default_factory=Finding)
    missing_objects: Finding = field(default_factory=Finding)
    idempotency_keys: Finding = field(default_factory=Finding)
    tombstones: Finding = field(default_factory=Finding)
    # metadata.json writes requested by a change that committed but never finished them.
    metadata_outbox: Finding = field(default_factory=Finding)
    # Complete groups whose stored metadata.json says something else than the database.
    metadata_mismatch: Finding = field(default_factory=Finding)
    # Recovery documents (an annotation's, a tombstone) a committed change left unwritten.
    recovery_outbox: Finding = field(default_factory=Finding)
    # Audit rows not in the bucket yet (found) and exported now (acted).
    audit_export: Finding = field(default_factory=Finding)
    orphan_bytes: int = 0
    # Objects no row claims that are younger than the grace period: kept for now (an upload
    # may be arriving), deleted by a later run once older; told, so nobody wonders.
    young_unclaimed: int = 0
    objects_deleted: int = 0
    multipart_supported: bool = False
    errors: list[str] = field(default_factory=list)

    FINDINGS = (
        "expired_groups",
        "pending_deletions",
        "stale_multipart_uploads",
        "orphan_objects",
        "missing_objects",
        "idempotency_keys",
        "tombstones",
        "metadata_outbox",
        "metadata_mismatch",
        "recovery_outbox",
        "audit_export",
    )

    def finding(self, name: str) -> Finding:
        value = getattr(self, name)
        assert isinstance(value, Finding)
        return value

    @property
    def clean(self) -> bool:
        """Nothing left over: no orphan, no missing object, no unfinished deletion."""
        return not (
            self.orphan_objects.found
            or self.missing_objects.found
            or self.pending_deletions.found - self.pending_deletions.acted
        )

    def summary(self) -> dict[str, int]:
        out = {f"{name}_found": self.finding(name).found for name in self.FINDINGS}
        out.update({f"{name}_acted": self.finding(name).acted for name in self.FINDINGS})
        out.update(objects_deleted=self.objects_deleted, orphan_bytes=self.orphan_bytes)
        out["young_unclaimed"] = self.young_unclaimed
        out["errors"] = len(self.errors)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clean"] = self.clean
        return data
