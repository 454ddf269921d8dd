"""A TLS front for a plain-HTTP S3 endpoint, for the pgBackRest drill only.

pgBackRest speaks S3 over HTTPS only (it has no plain-HTTP mode), and the suite's Ceph RGW
listens on plain HTTP. This relays bytes unchanged (the SigV4 signature, made over the Host
header pgBackRest sends, still matches) from TLS on 127.0.0.1:PORT to the endpoint.
Production S3 stores have TLS of their own and need nothing like this.

usage: tls_front.py CERT KEY LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(cert: str, key: str, port: int, host: str, target_port: int) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(host, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", port, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    c, k, p, h, tp = sys.argv[1:6]
    asyncio.run(main(c, k, int(p), h, int(tp)))
