/*
 * Helpers of the /viewer page that hold no page state: messages, API calls, the PUT to
 * storage (XMLHttpRequest, for upload progress), MD5 of a File, a small promise pool.
 */
(function (global) {
  "use strict";

  const HASH_CHUNK = 4 * 1024 * 1024;
  // Headers a browser sets itself and refuses from scripts.
  const BROWSER_HEADERS = new Set(["content-length", "host", "connection"]);
  // Clocks differ a little: an error this close to a URL's expiry counts as expiry (a needless
  // renewal costs one API call; a missed one fails the file).
  const EXPIRY_SLACK_MS = 5000;

  // ---- messages ------------------------------------------------------------------------

  function show(kind, text) {
    const box = document.createElement("div");
    box.className = `message ${kind}`;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.textContent = text;
    document.querySelector("#messages").prepend(box);
    while (document.querySelector("#messages").children.length > 5) document.querySelector("#messages").lastChild.remove();
    return box;
  }
  const showError = (text) => show("error", text);
  const showInfo = (text) => show("info", text);

  // ---- the API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && body.detail !== undefined ? body.detail : body;
      const name = (body && body.error) || "HTTPError";
      super(`${status} ${name}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
      this.status = status;
      this.body = body || {};
    }
  }

  // Requests that may be sent twice without doing anything twice: a keep-alive connection
  // closed by the server or a balancer just as the request left shows as a network error with
  // no answer, and these are sent again once (group creation carries an Idempotency-Key).
  const REPEATABLE_METHODS = new Set(["GET", "HEAD", "PUT", "DELETE"]);

  function repeatable(method, path, headers) {
    return REPEATABLE_METHODS.has(method) || "Idempotency-Key" in headers ||
      /\/(complete|upload-urls)$/.test(path);
  }

  // A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not).
  function idempotencyKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return "viewer-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(token, method, path, body, extraHeaders = {}) {
    if (!token) throw new Error("paste a token first (section 1)");
    const headers = {
      Authorization: `Bearer ${token}`,
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      ...extraHeaders,
    };
    const init = { method, headers, body: body !== undefined ? JSON.stringify(body) : undefined };
    let response;
    for (let attempt = 1; ; attempt++) {
      try {
        response = await fetch(path, init);
        break;
      } catch (err) {
        // fetch rejects with a TypeError when no answer came at all.
        if (err instanceof TypeError && attempt === 1 && repeatable(method, path, extraHeaders)) continue;
        throw new Error(`cannot reach the server: ${err.message}`);
      }
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text.slice(0, 300);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function subjectOf(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).sub || "?";
    } catch (_) {
      return null;
    }
  }

  function formatBytes(n) {
    if (n < 1000) return `${n} B`;
    const units = ["kB", "MB", "GB", "TB"];
    let i = -1;
    do {
      n /= 1000;
      i++;
    } while (n >= 1000 && i < units.length - 1);
    return `${n.toFixed(1)} ${units[i]}`;
  }

  // Content-MD5 of a File, read in HASH_CHUNK slices so a large file is never whole in memory.
  // MD5 is hash-wasm's (static/vendor/, WebAssembly: the page's CSP allows 'wasm-unsafe-eval').
  async function md5Base64(file) {
    const hasher = await global.hashwasm.createMD5();
    hasher.init();
    for (let offset = 0; offset < file.size; offset += HASH_CHUNK) {
      const chunk = await file.slice(offset, offset + HASH_CHUNK).arrayBuffer();
      hasher.update(new Uint8Array(chunk));
    }
    let binary = "";
    for (const b of hasher.digest("binary")) binary += String.fromCharCode(b);
    return btoa(binary);
  }

  function storageReason(xhr) {
    const text = xhr.responseText || "";
    const code = /<Code>([^<]*)<\/Code>/.exec(text);
    const message = /<Message>([^<]*)<\/Message>/.exec(text);
    if (code) return `${code[1]}${message ? ": " + message[1] : ""}`;
    try {
      const body = JSON.parse(text);
      return `${body.error}: ${body.detail}`;
    } catch (_) {
      return text.slice(0, 200) || xhr.statusText;
    }
  }

  // Whether the target's time is up by this browser's clock (give or take EXPIRY_SLACK_MS).
  function pastExpiry(target) {
    const at = Date.parse(target.expires_at);
    return Number.isFinite(at) && Date.now() >= at - EXPIRY_SLACK_MS;
  }

  function put(file, target, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", target.url);
      for (const [name, value] of Object.entries(target.headers)) {
        if (!BROWSER_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        // 412: write-once storage already holds this file (a retried PUT); complete verifies it.
        if ((xhr.status >= 200 && xhr.status < 300) || xhr.status === 412) return resolve();
        const error = new Error(`storage answered ${xhr.status} ${storageReason(xhr)}`);
        // Ceph RGW refuses an expired URL with AccessDenied and no message: ask the clock.
        const text = xhr.responseText || "";
        const code = /<Code>([^<]*)<\/Code>/.exec(text);
        const denied = !code || code[1] === "AccessDenied";
        error.expired = xhr.status === 403 && (/expired/i.test(text) || (denied && pastExpiry(target)));
        reject(error);
      };
      // Status 0: the browser blocked or lost the request before any answer — most often
      // storage's CORS rules do not allow this page's origin. S3 stores send no CORS headers
      // with their error answers, so an expired URL looks the same: the clock tells them apart.
      xhr.onerror = () => {
        if (pastExpiry(target)) {
          const error = new Error("the signed URL expired before storage accepted the file");
          error.expired = true;
          return reject(error);
        }
        const error = new Error(
          `the browser could not send the file to storage (${new URL(target.url).origin}): ` +
          `network error or blocked by CORS — storage must allow PUT from ${location.origin}`);
        error.network = true; // no answer at all: worth one more try (a dropped connection)
        reject(error);
      };
      xhr.ontimeout = () => reject(new Error("the upload timed out"));
      xhr.send(file);
    });
  }

  async function runPool(items, limit, fn) {
    const results = [];
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]);
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return results;
  }

  global.PacsViewer = {
    show, showError, showInfo, ApiError, api, idempotencyKey, subjectOf, formatBytes, md5Base64, put, runPool,
  };
})(window);
