"""DICOM Segmentation (SEG) without a server: map masks to source images, build and read SEG.

Pure functions over pydicom datasets and numpy arrays; no database, storage or configuration,
so the client SDK's `import-seg` uses the same reader the server's export is checked with."""
