"""ORM models, one module per table."""

from .annotation import Annotation
from .audit_event import AuditEvent
from .base import Base
from .mask import Mask
from .mask_group import MaskGroup
from .mask_group_file import MaskGroupFile

__all__ = ["Annotation", "AuditEvent", "Base", "Mask", "MaskGroup", "MaskGroupFile"]
