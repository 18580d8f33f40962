"""Asks a running Chromium, over the DevTools protocol, what its page shows.

Usage: cdp_page.py DEVTOOLS_PORT SECONDS EXPRESSION

Waits for the page target, then evaluates EXPRESSION (JavaScript returning a string) in it once
a second for SECONDS seconds and prints each result on a line of its own. Standard library only:
a minimal WebSocket client (RFC 6455: one masked text frame per message, unfragmented replies).
"""

import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request


def page_socket_url(port, deadline):
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("no page target in Chromium")
        time.sleep(0.2)


class WebSocket:
    def __init__(self, url):
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                sys.exit("the DevTools socket closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            sys.exit(f"no WebSocket upgrade: {head!r}")

    def _exactly(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                sys.exit("the DevTools socket closed")
            out += chunk
        return out

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        if len(data) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(data))
        elif len(data) < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(data))
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, len(data))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def receive(self):
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        payload = self._exactly(length)
        return first & 0x0F, payload


def main():
    port, seconds, expression = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    ws = WebSocket(page_socket_url(port, time.time() + 15))
    ask = 0
    end = time.time() + seconds
    while time.time() < end:
        ask += 1
        ws.send(json.dumps({"id": ask, "method": "Runtime.evaluate",
                            "params": {"expression": expression, "returnByValue": True}}))
        while True:
            opcode, payload = ws.receive()
            if opcode != 1:
                continue
            message = json.loads(payload)
            if message.get("id") == ask:
                value = message.get("result", {}).get("result", {}).get("value")
                print(value if isinstance(value, str) else json.dumps(value), flush=True)
                break
        time.sleep(1)


main()
