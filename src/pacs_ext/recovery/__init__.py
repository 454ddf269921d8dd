"""Disaster recovery: rebuild the database from the bucket's metadata.json files."""
