"""Moving an installation's mask files into object storage, and rebuilding the database from
the bucket's metadata.json files (disaster recovery)."""
