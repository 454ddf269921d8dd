"""Moving an installation's mask files into object storage (legacy import), and serving
the masks not yet moved from the old folder."""
