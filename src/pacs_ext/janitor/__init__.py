"""The janitor: expires abandoned uploads, finishes recorded deletions, finds orphans."""
