"""Presigned PUT URLs: µs per URL for SigV4Presigner and for boto3, in the same run.

Run: PYTHONPATH=src python bench/presign.py [--urls 10000] [--runs 5]

Every run signs --urls PUT URLs with content-type, content-length and content-md5 signed, as
an upload session does; the median and the best of --runs runs are printed, runs of the
contenders interleaved. The crypto floor (1 SHA-256 + 1 hmac.digest per URL) puts the figures
in proportion on a given machine. Prints figures only; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import platform
import ssl
import statistics
import time
from collections.abc import Callable

import boto3
import botocore
from botocore.config import Config

from pacs_ext.storage.s3.sigv4 import SigV4Presigner

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"
BUCKET = "pacs-ext-bench"
EXPIRES = 900


def make_uploads(n: int) -> list[tuple[str, str, str]]:
    """(key, content-length, content-md5) for n DICOM-instance-like objects."""
    study = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    uploads = []
    for i in range(n):
        key = f"studies/{study}/series/{study}.{i // 500}/instances/{study}.{i}.dcm"
        md5 = base64.b64encode(hashlib.md5(key.encode()).digest()).decode()
        uploads.append((key, str(500_000 + i), md5))
    return uploads


def bench_lean(uploads: list[tuple[str, str, str]]) -> Callable[[], None]:
    signer = SigV4Presigner(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        endpoint="",
        bucket=BUCKET,
        addressing_style="virtual",
    )
    presign = signer.presign

    def run() -> None:
        for key, size, md5 in uploads:
            presign(
                "PUT",
                key,
                expires_in=EXPIRES,
                headers={
                    "content-type": "application/dicom",
                    "content-length": size,
                    "content-md5": md5,
                },
            )

    return run


def bench_boto3(uploads: list[tuple[str, str, str]]) -> Callable[[], None]:
    client = boto3.session.Session().client(
        "s3",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    generate = client.generate_presigned_url

    def run() -> None:
        for key, size, md5 in uploads:
            generate(
                "put_object",
                Params={
                    "Bucket": BUCKET,
                    "Key": key,
                    "ContentType": "application/dicom",
                    "ContentLength": int(size),
                    "ContentMD5": md5,
                },
                ExpiresIn=EXPIRES,
            )

    return run


def crypto_floor(uploads: list[tuple[str, str, str]]) -> Callable[[], None]:
    """1 SHA-256 of each URL's canonical request + 1 hmac.digest: the work no signer avoids."""
    signer = SigV4Presigner(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        endpoint="",
        bucket=BUCKET,
        addressing_style="virtual",
    )
    host = f"{BUCKET}.s3.{REGION}.amazonaws.com"
    requests = []
    for key, size, md5 in uploads:
        headers = {"content-length": size, "content-md5": md5, "content-type": "application/dicom"}
        url = signer.presign("PUT", key, expires_in=EXPIRES, headers=headers)
        path, _, query = url.removeprefix(f"https://{host}").partition("?")
        # Without a session token the URL's auth parameters are already in canonical order.
        canonical_query = query.partition("&X-Amz-Signature=")[0]
        canonical_headers = "".join(f"{name}:{value}\n" for name, value in headers.items())
        requests.append(
            f"PUT\n{path}\n{canonical_query}\n{canonical_headers}host:{host}\n\n"
            f"content-length;content-md5;content-type;host\nUNSIGNED-PAYLOAD"
        )
    signing_key = hashlib.sha256(b"stands in for the day's signing key").digest()
    string_to_sign = "AWS4-HMAC-SHA256\n20240506T070809Z\n20240506/eu-west-1/s3/aws4_request\n"

    def run() -> None:
        for canonical_request in requests:
            digest = hashlib.sha256(canonical_request.encode()).hexdigest()
            hmac.digest(signing_key, (string_to_sign + digest).encode(), "sha256").hex()

    return run


def us_per_url(runs: dict[str, Callable[[], None]], n: int, rounds: int) -> dict[str, list[float]]:
    """µs per URL of each run, `rounds` times, interleaved so load spikes hit all alike."""
    for run in runs.values():
        run()  # warm-up: caches, lazy imports, boto3's endpoint ruleset
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append((time.perf_counter() - start) / n * 1e6)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    uploads = make_uploads(args.urls)

    timings = us_per_url(
        {
            "SigV4Presigner": bench_lean(uploads),
            "boto3 generate_presigned_url": bench_boto3(uploads),
            "crypto floor (sha256 + hmac)": crypto_floor(uploads),
        },
        args.urls,
        args.runs,
    )
    print(
        f"Python {platform.python_version()}, boto3 {boto3.__version__}, "
        f"botocore {botocore.__version__}, {ssl.OPENSSL_VERSION}; {args.urls} PUT URLs "
        f"(content-type/length/md5 signed), {args.runs} runs each"
    )
    print(f"{'':30} {'median':>8} {'best':>8}  µs/URL")
    for name, values in timings.items():
        print(f"{name:30} {statistics.median(values):8.2f} {min(values):8.2f}")
    lean = statistics.median(timings["SigV4Presigner"])
    boto = statistics.median(timings["boto3 generate_presigned_url"])
    print(f"ratio boto3 / SigV4Presigner (medians): {boto / lean:.1f}x")


if __name__ == "__main__":
    main()
