"""ORM models, one module per table."""

from .annotation import Annotation
from .audit_event import AuditEvent
from .base import Base
from .idempotency_key import IdempotencyKey
from .mask import Mask
from .mask_group import MaskGroup
from .mask_group_file import MaskGroupFile
from .metadata_outbox import MetadataOutbox
from .pending_deletion import PendingDeletion
from .recovery import AuditExportQueue, RecoveryMark, RecoveryOutbox
from .seg_export import SegExport
from .tombstone import Tombstone

__all__ = [
    "Annotation",
    "AuditEvent",
    "AuditExportQueue",
    "Base",
    "IdempotencyKey",
    "Mask",
    "MaskGroup",
    "MaskGroupFile",
    "MetadataOutbox",
    "PendingDeletion",
    "RecoveryMark",
    "RecoveryOutbox",
    "SegExport",
    "Tombstone",
]
