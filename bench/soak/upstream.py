"""The soak's upstream, a process of its own: plain HTTP/1.1 with keep-alive answering a small
JSON body (and the identity headers the gateway added, so the soak can see who was admitted),
and a WebSocket echo for upgrade requests. Usage: upstream.py ADDR_FILE (writes host:port)."""

import base64
import hashlib
import json
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def read_frame(f):
    """One frame: (fin, opcode, payload), unmasked."""
    b0, b1 = read_exact(f, 2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", read_exact(f, 2))
    elif length == 127:
        (length,) = struct.unpack(">Q", read_exact(f, 8))
    mask = read_exact(f, 4) if b1 & 0x80 else None
    payload = read_exact(f, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x80, b0 & 0x0F, payload


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        body = json.dumps(
            {
                "object": "list",
                "data": [],
                "certificate_id": self.headers.get("X-Certgate-Certificate-Id"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                _, opcode, payload = read_frame(self.rfile)
                if opcode == 8:
                    self.wfile.write(frame(8, payload[:2]))
                    self.wfile.flush()
                    break
                if opcode == 9:
                    self.wfile.write(frame(10, payload))
                elif opcode in (1, 2):
                    self.wfile.write(frame(opcode, payload))
                self.wfile.flush()
        except (EOFError, OSError, ValueError):
            pass
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main():
    server = Server(("127.0.0.1", 0), Handler)
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("127.0.0.1:%d" % server.server_address[1])
    import os

    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
