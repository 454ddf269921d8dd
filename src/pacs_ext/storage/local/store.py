"""The embedded object store: files under a root folder, reached through signed URLs that the
server itself issues and serves (see storage/local_endpoints.py)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import anyio.to_thread

from ...core.clock import SYSTEM_CLOCK, Clock
from ...core.private_files import private_dirs
from ..base import (
    Capabilities,
    ChecksumMismatch,
    InvalidObjectKey,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    SignedRequest,
    StorageError,
    StoredFile,
    UploadSpec,
    validate_key,
)

MD5_XATTR = "user.pacs.md5"
TYPE_XATTR = "user.pacs.content_type"
TMP_DIR = ".tmp"
ROUTE_PREFIX = "/storage/"


class SignatureError(Exception):
    """A local signed URL is expired, tampered with, or used with other headers."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


# Unix seconds as this server writes them: ASCII digits only (str.isdigit also takes "²" and
# "①", which int() refuses), and few enough for int() (a 5,000-digit string raises).
_EXPIRY_DIGITS = 12


def check_expiry(expires: str, clock: Clock = SYSTEM_CLOCK) -> int:
    """The expiry of a signed URL as a number; 403 when malformed or past (on `clock`)."""
    if not (0 < len(expires) <= _EXPIRY_DIGITS and expires.isascii() and expires.isdigit()):
        raise SignatureError(403, "AccessDenied", "missing or malformed expiry")
    expiry = int(expires)
    if expiry < clock.time():
        raise SignatureError(403, "AccessDenied", "the signed URL has expired")
    return expiry


class LocalStorage(ObjectStorage):
    name = "local"
    capabilities = Capabilities()

    def __init__(
        self,
        root: Path,
        secret: bytes,
        base_url: str,
        bucket: str = "local",
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.root = root.resolve()
        self.clock = clock  # signs and checks URL expiry
        self.bucket = bucket
        self._secret = secret
        self._base = base_url.rstrip("/") + ROUTE_PREFIX
        private_dirs(self.root / TMP_DIR)

    # ---- signing -------------------------------------------------------------------------

    def _signature(self, method: str, key: str, expires: int, *bound: str) -> str:
        msg = "\n".join((method, key, str(expires), *bound)).encode()
        return hmac.digest(self._secret, msg, "sha256").hex()

    def sign_upload(self, spec: UploadSpec, ttl_seconds: int) -> SignedRequest:
        validate_key(spec.key)
        expires = int(self.clock.time()) + ttl_seconds
        md5 = spec.md5_b64 or ""
        sig = self._signature("PUT", spec.key, expires, spec.content_type, str(spec.size), md5)
        headers = {"Content-Type": spec.content_type, "Content-Length": str(spec.size)}
        if md5:
            headers["Content-MD5"] = md5
        url = f"{self._base}{quote(spec.key, safe='/~')}?expires={expires}&signature={sig}"
        return SignedRequest("PUT", url, headers, datetime.fromtimestamp(expires, UTC))

    def sign_download(
        self,
        key: str,
        ttl_seconds: int,
        *,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> SignedRequest:
        validate_key(key)
        expires = int(self.clock.time()) + ttl_seconds
        disposition = content_disposition or ""
        served = content_type or ""  # "": the type stored with the object
        sig = self._signature("GET", key, expires, *_get_bound(disposition, served))
        query = {"expires": str(expires), "signature": sig}
        if disposition:
            query["response-content-disposition"] = disposition
        if served:
            query["response-content-type"] = served
        url = f"{self._base}{quote(key, safe='/~')}?{urlencode(query, quote_via=quote)}"
        return SignedRequest("GET", url, {}, datetime.fromtimestamp(expires, UTC))

    def verify_put(
        self,
        key: str,
        expires: str,
        signature: str,
        content_type: str,
        content_length: str,
        content_md5: str,
    ) -> None:
        expiry = self._check(expires)
        expected = self._signature("PUT", key, expiry, content_type, content_length, content_md5)
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(
                403,
                "SignatureDoesNotMatch",
                "the request does not match the signed URL (key, expiry, Content-Type, "
                "Content-Length and Content-MD5 must be exactly as issued)",
            )

    def verify_get(
        self, key: str, expires: str, signature: str, disposition: str, content_type: str = ""
    ) -> None:
        expiry = self._check(expires)
        bound = _get_bound(disposition, content_type)
        if not hmac.compare_digest(self._signature("GET", key, expiry, *bound), signature):
            raise SignatureError(403, "SignatureDoesNotMatch", "signature does not match")

    def _check(self, expires: str) -> int:
        return check_expiry(expires, self.clock)

    # ---- paths ---------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        validate_key(key)
        if key.startswith(TMP_DIR + "/") or key == TMP_DIR:
            raise InvalidObjectKey(f"object key {key!r} is reserved")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidObjectKey(f"object key {key!r} escapes the storage root")
        return path

    def temp_path(self) -> Path:
        return self.root / TMP_DIR / uuid.uuid4().hex

    def commit_temp(
        self, tmp: Path, key: str, md5_hex: str, content_type: str, *, exclusive: bool = False
    ) -> None:
        """Atomically publish a fully written temp file under key (blocking: run in a thread).
        exclusive: never replace an object (signed PUTs are write-once): ObjectExists."""
        dest = self.path_for(key)
        try:
            os.setxattr(tmp, MD5_XATTR, md5_hex.encode())
            os.setxattr(tmp, TYPE_XATTR, content_type.encode())
        except OSError:
            pass  # filesystems without xattrs: the MD5 is recomputed when listing
        private_dirs(dest.parent)
        os.chmod(tmp, 0o600)  # masks are patient data: the server's user only
        if not exclusive:
            os.replace(tmp, dest)
            return
        # link() fails if dest exists: two racing PUTs of one key cannot both store.
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise ObjectExists(key) from None
        os.unlink(tmp)

    # ---- I/O -----------------------------------------------------------------------------

    async def list_prefix(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        infos = await anyio.to_thread.run_sync(self._list_sync, prefix)
        for info in infos:
            yield info

    def _list_sync(self, prefix: str) -> list[ObjectInfo]:
        base_dir = prefix.rpartition("/")[0]
        start = self.root / base_dir if base_dir else self.root
        try:
            start = start.resolve()
        except OSError:
            return []
        if not start.is_relative_to(self.root) or not start.is_dir():
            return []
        out = []
        for path in _walk_files(start):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and not key.startswith(TMP_DIR + "/"):
                with contextlib.suppress(FileNotFoundError):
                    out.append(_info(key, path))
        out.sort(key=lambda o: o.key)
        return out

    async def head(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        try:
            return await anyio.to_thread.run_sync(_info, key, path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def read_locations(self, keys: Sequence[str], ttl_seconds: int) -> list[str]:
        return [str(self.path_for(k)) for k in keys]

    async def get_bytes(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        def write() -> None:
            tmp = self.temp_path()
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.commit_temp(tmp, key, hashlib.md5(data).hexdigest(), content_type)  # noqa: S324

        self.path_for(key)
        try:
            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            raise StorageError(f"cannot write {key!r}: {exc.strerror}") from None

    async def put_file(
        self, key: str, path: Path, content_type: str, md5_b64: str | None = None
    ) -> StoredFile:
        self.path_for(key)
        try:
            return await anyio.to_thread.run_sync(
                self._put_file_sync, key, path, content_type, md5_b64
            )
        except OSError as exc:
            raise StorageError(f"cannot store {path} as {key!r}: {exc.strerror}") from None

    def _put_file_sync(
        self, key: str, path: Path, content_type: str, md5_b64: str | None
    ) -> StoredFile:
        tmp = self.temp_path()
        digest = hashlib.md5()  # noqa: S324 - the S3 Content-MD5 contract
        size = 0
        try:
            with open(path, "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if md5_b64 is not None and base64.b64encode(digest.digest()).decode() != md5_b64:
                raise ChecksumMismatch(f"{path}: the bytes read differ from the declared MD5")
            md5_hex = digest.hexdigest()
            self.commit_temp(tmp, key, md5_hex, content_type)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return StoredFile(key, size, md5_hex, md5_hex)

    async def delete_many(self, keys: Iterable[str]) -> None:
        paths = [self.path_for(k) for k in keys]
        try:
            await anyio.to_thread.run_sync(self._delete_sync, paths)
        except OSError as exc:
            raise StorageError(
                f"cannot delete {exc.filename or 'object'}: {exc.strerror}"
            ) from None

    def _delete_sync(self, paths: list[Path]) -> None:
        parents = set()
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            parents.add(path.parent)
        # Prune directories left empty so a deleted group leaves nothing behind.
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            d = parent
            while d != self.root and d.is_relative_to(self.root):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent

    async def ping(self) -> None:
        ok = await anyio.to_thread.run_sync(os.access, self.root, os.W_OK)
        if not ok:
            raise StorageError(f"storage root {self.root} is not writable")


def _get_bound(disposition: str, content_type: str) -> tuple[str, ...]:
    # The type is bound only when given, so URLs signed before it existed keep their meaning.
    return (disposition, content_type) if content_type else (disposition,)


def _walk_files(start: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = [d for d in dirnames if d != TMP_DIR]
        for name in filenames:
            yield Path(dirpath, name)


def _info(key: str, path: Path) -> ObjectInfo:
    st = path.stat()
    if not path.is_file():
        raise FileNotFoundError(key)
    try:
        md5 = os.getxattr(path, MD5_XATTR).decode()
    except OSError:
        md5 = file_md5(path)
    return ObjectInfo(key, st.st_size, md5, datetime.fromtimestamp(st.st_mtime, UTC))


def content_type_of(path: Path) -> str:
    try:
        return os.getxattr(path, TYPE_XATTR).decode()
    except OSError:
        return "application/octet-stream"


def file_md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - MD5 is the S3 ETag contract, not a security control
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def b64_to_hex(md5_b64: str) -> str:
    return base64.b64decode(md5_b64).hex()
