/*
 * MD5 (RFC 1321) for the PACS Extension viewer: WebCrypto has no MD5, and S3's Content-MD5
 * needs it. Incremental: new MD5().update(bytes)...digest() → Uint8Array(16).
 * Written for this project; checked against Python's hashlib in tests/browser.
 */
(function (global) {
  "use strict";

  const K = new Int32Array([
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
    0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
    0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
    0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
    0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
    0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
    0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391,
  ]);
  const S = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
  ];

  class MD5 {
    constructor() {
      this.h = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
      this.buffer = new Uint8Array(64);
      this.buffered = 0;
      this.length = 0; // bytes hashed so far
      this.words = new Int32Array(16);
    }

    update(bytes) {
      if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
      this.length += bytes.length;
      let i = 0;
      if (this.buffered > 0) {
        const take = Math.min(64 - this.buffered, bytes.length);
        this.buffer.set(bytes.subarray(0, take), this.buffered);
        this.buffered += take;
        i = take;
        if (this.buffered < 64) return this;
        this._block(this.buffer, 0);
        this.buffered = 0;
      }
      for (; i + 64 <= bytes.length; i += 64) this._block(bytes, i);
      if (i < bytes.length) {
        this.buffer.set(bytes.subarray(i), 0);
        this.buffered = bytes.length - i;
      }
      return this;
    }

    digest() {
      const bits = this.length * 8;
      const pad = new Uint8Array(((this.buffered < 56 ? 56 : 120) - this.buffered) + 8);
      pad[0] = 0x80;
      const n = pad.length;
      const lo = bits % 0x100000000;
      const hi = Math.floor(bits / 0x100000000);
      for (let k = 0; k < 4; k++) {
        pad[n - 8 + k] = (lo >>> (8 * k)) & 0xff;
        pad[n - 4 + k] = (hi >>> (8 * k)) & 0xff;
      }
      const length = this.length;
      this.update(pad);
      this.length = length;
      const out = new Uint8Array(16);
      for (let w = 0; w < 4; w++) {
        for (let k = 0; k < 4; k++) out[w * 4 + k] = (this.h[w] >>> (8 * k)) & 0xff;
      }
      return out;
    }

    _block(b, off) {
      const m = this.words;
      for (let w = 0; w < 16; w++) {
        const p = off + w * 4;
        m[w] = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
      }
      let a = this.h[0], bb = this.h[1], c = this.h[2], d = this.h[3];
      for (let i = 0; i < 64; i++) {
        let f, g;
        if (i < 16) {
          f = (bb & c) | (~bb & d);
          g = i;
        } else if (i < 32) {
          f = (d & bb) | (~d & c);
          g = (5 * i + 1) & 15;
        } else if (i < 48) {
          f = bb ^ c ^ d;
          g = (3 * i + 5) & 15;
        } else {
          f = c ^ (bb | ~d);
          g = (7 * i) & 15;
        }
        const t = d;
        d = c;
        c = bb;
        const x = (a + f + K[i] + m[g]) | 0;
        bb = (bb + ((x << S[i]) | (x >>> (32 - S[i])))) | 0;
        a = t;
      }
      this.h[0] = (this.h[0] + a) | 0;
      this.h[1] = (this.h[1] + bb) | 0;
      this.h[2] = (this.h[2] + c) | 0;
      this.h[3] = (this.h[3] + d) | 0;
    }

    static base64(bytes) {
      let s = "";
      for (const b of bytes) s += String.fromCharCode(b);
      return btoa(s);
    }

    static hex(bytes) {
      return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
  }

  global.MD5 = MD5;
})(window);
