"""DICOM SEG exports of complete mask groups: checked and mapped in the request, built by a
runner off the request (storage reads on the event loop, decoding and encoding in threads),
written beside the group and optionally stored into the PACS by STOW-RS."""
