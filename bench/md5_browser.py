"""MD5 in headless Chromium: MB/s of the viewer's MD5 candidates, in the same run.

Run: .venv/bin/python bench/md5_browser.py [--small 256] [--large-mib 8] [--runs 5]

The viewer computes every file's Content-MD5 in the page before the upload (WebCrypto has no
MD5). Contenders:
- md5.js: the hand-written MD5 the viewer shipped before it vendored a library (read from git
  history, `git show <last commit with it>:src/pacs_ext/static/md5.js`; skipped if absent);
- spark-md5 3.0.2 (plain JS, `SparkMD5.ArrayBuffer` incremental API);
- hash-wasm 4.13.0 (`createMD5()`, WebAssembly).
The npm ones come from src/pacs_ext/static/vendor/ when vendored there, otherwise from
`npm pack` into a temporary folder (needs npm and the registry).

Data is what the browser tests upload: --small PNG-mask-sized files (20 KB each, one
update per file) and one --large-mib file hashed in the viewer's 4 MiB chunks. Bytes are
random (a PNG mask is deflated, so close to random) and every digest is checked against
hashlib. Each contender runs in its own page, served with the viewer's Content-Security-Policy
(pacs_ext.viewer); each is first tried without 'wasm-unsafe-eval' in script-src, to show which
needs it (WebAssembly compilation does), then measured under the viewer's CSP (which has it).
Prints the median and best of --runs runs, contenders interleaved; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import random
import statistics
import subprocess
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from pacs_ext.http.viewer import _HEADERS

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "pacs_ext" / "static" / "vendor"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
HASH_CHUNK = 4 * 1024 * 1024  # viewer-common.js
SMALL_SIZE = 20 * 1024
VIEWER_CSP = _HEADERS["Content-Security-Policy"]
NO_WASM_CSP = VIEWER_CSP.replace(" 'wasm-unsafe-eval'", "")

# (npm package, version, file inside the package)
NPM = {
    "spark-md5": ("spark-md5", "3.0.2", "spark-md5.min.js"),
    "hash-wasm": ("hash-wasm", "4.13.0", "dist/md5.umd.min.js"),
}

# One hasher factory per contender: resolves to (bytes chunks) -> base64 digest.
FACTORIES = {
    "md5.js": """async () => (chunks) => {
        const h = new MD5();
        for (const c of chunks) h.update(c);
        return MD5.base64(h.digest());
    }""",
    "spark-md5": """async () => (chunks) => {
        const h = new SparkMD5.ArrayBuffer();
        for (const c of chunks) h.append(c.buffer);
        return btoa(h.end(true));
    }""",
    "hash-wasm": """async () => {
        const h = await hashwasm.createMD5();
        return (chunks) => {
            h.init();
            for (const c of chunks) h.update(c);
            let s = "";
            for (const b of h.digest("binary")) s += String.fromCharCode(b);
            return btoa(s);
        };
    }""",
}


def hand_written_md5() -> str | None:
    path = "src/pacs_ext/static/md5.js"
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-list", "-1", "HEAD", "--", path],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    for spec in (f"HEAD:{path}", f"{rev}^:{path}"):
        out = subprocess.run(
            ["git", "-C", str(ROOT), "show", spec], capture_output=True, text=True, check=False
        )
        if out.returncode == 0:
            return out.stdout
    return None


def npm_script(name: str, tmp: Path) -> str | None:
    package, version, inner = NPM[name]
    vendored = VENDOR / f"{package}-{version}" / Path(inner).name
    if vendored.is_file():
        return vendored.read_text()
    out = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--pack-destination", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return None
    with tarfile.open(tmp / f"{package}-{version}.tgz") as tar:
        member = tar.extractfile(f"package/{inner}")
        return member.read().decode() if member else None


class Site:
    """A local origin serving each contender's script on a page with a given CSP."""

    def __init__(self, scripts: dict[str, str]) -> None:
        scripts_ = scripts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path.startswith("/js/") and path[4:] in scripts_:
                    self._send(scripts_[path[4:]].encode(), "text/javascript", None)
                elif path.startswith("/page/") and path[6:] in scripts_:
                    csp = NO_WASM_CSP if query == "nowasm" else VIEWER_CSP
                    html = f'<!doctype html><script src="/js/{path[6:]}"></script>'
                    self._send(html.encode(), "text/html", csp)
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str, csp: str | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if csp:
                    self.send_header("Content-Security-Policy", csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def open_page(page: Page, site: Site, name: str, wasm: bool) -> str | None:
    """Load the contender and build its hasher; the error text if the page refuses it."""
    page.goto(f"{site.url}/page/{name}" + ("" if wasm else "?nowasm"))
    try:
        page.evaluate(f"async () => {{ window.hasher = await ({FACTORIES[name]})(); }}")
    except Exception as exc:  # the CSP refusing WebAssembly, typically
        return str(exc).splitlines()[0]
    return None


def load_data(page: Page, small: list[bytes], large: bytes) -> None:
    page.evaluate(
        """([small, large, chunk]) => {
            const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            window.small = small.map(bytes);
            const big = bytes(large);
            window.large = [];
            for (let i = 0; i < big.length; i += chunk) window.large.push(big.slice(i, i + chunk));
        }""",
        [
            [base64.b64encode(b).decode() for b in small],
            base64.b64encode(large).decode(),
            HASH_CHUNK,
        ],
    )


def timed(page: Page, kind: str) -> tuple[float, list[str]]:
    """(seconds, digests) hashing window.small (one file each) or window.large (one file)."""
    ms, digests = page.evaluate(
        """(kind) => {
            const files = kind === "small" ? window.small.map((b) => [b]) : [window.large];
            const t0 = performance.now();
            const out = files.map((chunks) => window.hasher(chunks));
            return [performance.now() - t0, out];
        }""",
        kind,
    )
    return ms / 1000, digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=256, help="number of 20 KB files")
    parser.add_argument("--large-mib", type=int, default=8, help="size of the large file")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(13)
    small = [rng.randbytes(SMALL_SIZE) for _ in range(args.small)]
    large = rng.randbytes(args.large_mib * 1024 * 1024 + 5)
    want = {
        "small": [base64.b64encode(hashlib.md5(b).digest()).decode() for b in small],
        "large": [base64.b64encode(hashlib.md5(large).digest()).decode()],
    }
    megabytes = {"small": len(small) * SMALL_SIZE / 1e6, "large": len(large) / 1e6}

    with tempfile.TemporaryDirectory() as tmp:
        scripts: dict[str, str] = {}
        old = hand_written_md5()
        if old is None:
            print("md5.js: not found in git history, skipped")
        else:
            scripts["md5.js"] = old
        for name in NPM:
            text = npm_script(name, Path(tmp))
            if text is None:
                print(f"{name}: neither vendored nor fetched with npm pack, skipped")
            else:
                scripts[name] = text
    site = Site(scripts)

    print(f"{platform.processor() or platform.machine()}, {CHROMIUM}")
    print(f"small: {args.small} x {SMALL_SIZE} B; large: 1 x {len(large)} B in 4 MiB chunks")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages: dict[str, Page] = {}
        for name in scripts:
            page = browser.new_page()
            refused = open_page(page, site, name, wasm=False)
            needs = "no" if refused is None else f"yes (without it: {refused})"
            print(f"{name} needs 'wasm-unsafe-eval': {needs}")
            refused = open_page(page, site, name, wasm=True)
            if refused is not None:
                print(f"{name}: refused under the viewer's CSP ({refused}), skipped")
                continue
            load_data(page, small, large)
            pages[name] = page

        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for kind in ("small", "large"):
                for name, page in pages.items():
                    seconds, digests = timed(page, kind)
                    if digests != want[kind]:
                        raise SystemExit(f"{name}: wrong MD5 for the {kind} file(s)")
                    results.setdefault((name, kind), []).append(megabytes[kind] / seconds)
        browser.close()
    site.close()

    print(f"\nMB/s (median / best of {args.runs}; digests checked against hashlib)")
    print(f"{'contender':36} {'small 20 KB files':>22} {'large file':>22}")
    for name in pages:
        cells = []
        for kind in ("small", "large"):
            r = results[(name, kind)]
            cells.append(f"{statistics.median(r):9.1f} / {max(r):9.1f}")
        print(f"{name:36} {cells[0]:>22} {cells[1]:>22}")


if __name__ == "__main__":
    main()
