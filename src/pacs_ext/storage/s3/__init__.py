"""The S3 backend: client, SigV4 presigning, multipart uploads and the error table."""
