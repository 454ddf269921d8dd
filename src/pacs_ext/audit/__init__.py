"""The audit trail: who created, changed, deleted or was handed a signed URL for what."""
