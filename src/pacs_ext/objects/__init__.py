"""The one place that knows how mask objects are laid out in the bucket:
keys, claims, metadata.json, the metadata outbox and recorded deletions."""
