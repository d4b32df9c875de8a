"""A TCP relay that holds each connection DELAY_MS before passing it to TARGET_PORT: the OCSP
responder `bench/ocsp/run.sh` measures first connections against, `openssl ocsp` answering
DELAY_MS later than it would. Usage: delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS"""
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def relay(client_r, client_w, target_port, delay):
    await asyncio.sleep(delay)
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w), return_exceptions=True)


async def main(listen, target, delay_ms):
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, target, delay_ms / 1000), "127.0.0.1", listen, backlog=1024
    )
    print(f"delay proxy listening on {listen}, {delay_ms} ms before {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
