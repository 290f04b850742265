#!/usr/bin/env python3
"""A signing reverse proxy for schemathesis: it forwards every request as
received (method, raw path and query, headers, body bytes) to the switch,
adding the client signature headers of Switch API v1 ("Clients and request
signing") to calls under /v1/transactions, /v1/collects and /v1/vpa, signed
with the client key file the rig wrote (client.json). Operator calls carry
the bearer token schemathesis was given; nothing else is changed.

Usage: sign_proxy.py SWITCH_URL CLIENT_KEY_FILE PORT_FILE
Listens on 127.0.0.1 (a free port, written to PORT_FILE) until killed.
"""
import base64
import hashlib
import http.client
import json
import secrets
import socket
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNED = ("/v1/transactions", "/v1/collects", "/v1/vpa")
# The signature headers: whatever the caller sent is replaced by the proxy's.
SIGNATURE = {"x-client-id", "x-key-id", "x-timestamp", "x-nonce", "x-signature"}
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}


def main():
    switch, key_file, port_file = sys.argv[1:4]
    target = urllib.parse.urlsplit(switch)
    with open(key_file) as f:
        key = json.load(f)
    secret = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key["secret_key"]))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            lines = [f"{self.command} {self.path} HTTP/1.1"]
            for name, value in self.headers.raw_items():
                if name.lower() in HOP or name.lower() == "content-length":
                    continue
                if name.lower() in SIGNATURE and self.path.startswith(SIGNED):
                    continue
                lines.append(f"{name}: {value}")
            if self.path.startswith(SIGNED):
                ts = str(int(time.time()))
                nonce = secrets.token_urlsafe(24)
                text = "\n".join([self.command, self.path, ts, nonce, hashlib.sha256(body).hexdigest()])
                signature = base64.b64encode(secret.sign(text.encode())).decode()
                lines += [
                    f"X-Client-Id: {key['client_id']}",
                    f"X-Key-Id: {key['key_id']}",
                    f"X-Timestamp: {ts}",
                    f"X-Nonce: {nonce}",
                    f"X-Signature: {signature}",
                ]
            if body or self.command in ("POST", "PUT", "PATCH"):
                lines.append(f"Content-Length: {len(body)}")
            lines.append("Connection: close")
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
            with socket.create_connection((target.hostname, target.port), timeout=60) as sock:
                sock.sendall(raw)
                resp = http.client.HTTPResponse(sock, method=self.command)
                resp.begin()
                data = resp.read()
                self.send_response_only(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() in HOP or name.lower() in ("transfer-encoding", "content-length"):
                        continue
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        def __getattr__(self, name):
            # Every method, known or not (TRACE, made-up ones), is relayed.
            if name.startswith("do_"):
                return self.relay
            raise AttributeError(name)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
