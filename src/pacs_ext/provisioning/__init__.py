"""Bucket provisioning and the storage doctor behind `pacs-ext storage init | policy | check`."""
