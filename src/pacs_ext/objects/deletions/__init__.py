"""Deletions of stored objects that survive storage failures (recorded, then retried)."""
