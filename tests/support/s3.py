#!/usr/bin/env python3
"""The S3 API for the integration tests: moto's server, on loopback, behind a small proxy that
records every request (method, path, Range header, status, bytes sent back) and can fail on
demand; and a second moto server that checks credentials. Started by `tests/cli/s3.rs`.

Prints one JSON line with the ports, then serves until its stdin closes (the test process
ended). Control endpoints on the proxy:

  GET  /__log          the recorded requests, as a JSON array
  POST /__log/reset    forget them
  POST /__fail?n=N     answer the next N requests with 503 SlowDown (a transient error)
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto(port, check_credentials):
    env = dict(os.environ)
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    code = (
        "import sys, time\n"
        "from moto.server import ThreadedMotoServer\n"
        f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "s.start()\n"
        "sys.stdin.read()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            import time
            time.sleep(0.05)
    raise SystemExit(f"moto did not start on {port}")


open_port, auth_port, proxy_port = free_port(), free_port(), free_port()
servers = [moto(open_port, False), moto(auth_port, True)]
wait(open_port)
wait(auth_port)

log = []
fail = {"n": 0}
lock = threading.Lock()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/__log":
            with lock:
                return self.reply(200, json.dumps(log).encode())
        if url.path == "/__log/reset":
            with lock:
                log.clear()
            return self.reply(200, b"{}")
        if url.path == "/__fail":
            with lock:
                fail["n"] = int(parse_qs(url.query).get("n", ["1"])[0])
            return self.reply(200, b"{}")
        with lock:
            failing = fail["n"] > 0
            if failing:
                fail["n"] -= 1
        if failing:
            xml = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            with lock:
                log.append({"method": self.command, "path": url.path, "range": self.headers.get("Range"),
                            "status": 503, "bytes": 0})
            return self.reply(503, xml, "application/xml")
        conn = http.client.HTTPConnection("127.0.0.1", open_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        with lock:
            log.append({"method": self.command, "path": url.path, "range": self.headers.get("Range"),
                        "status": resp.status, "bytes": len(data)})
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        # A HEAD answer has no body but the object's length.
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


proxy = ThreadingHTTPServer(("127.0.0.1", proxy_port), Proxy)
threading.Thread(target=proxy.serve_forever, daemon=True).start()
print(json.dumps({"proxy": proxy_port, "direct": open_port, "auth": auth_port}), flush=True)
sys.stdin.read()  # until the test process ends
for s in servers:
    s.stdin.close()
    s.terminate()
