"""A counting HTTP proxy in front of moto's S3 server, for bench/replication.sh.

moto keeps no request log, so the replicators talk to this proxy, which forwards every request
unchanged (bodies streamed, fixed-length or chunked) and counts it by bucket (the first path
segment: both clients use path-style requests) and by kind (GET/PUT/HEAD/DELETE/POST, and LIST
for a GET on a bucket's root). `GET /__counts` answers the counts so far as JSON.

    python3 bench/s3proxy.py LISTEN_PORT UPSTREAM_PORT
"""

import http.client
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

counts = Counter()
lock = threading.Lock()
upstream_port = int(sys.argv[2])
local = threading.local()


def upstream():
    if getattr(local, "connection", None) is None:
        local.connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=300)
    return local.connection


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        parts = urlsplit(self.path)
        if parts.path == "/__counts":
            body = json.dumps({f"{b} {k}": n for (b, k), n in counts.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        segments = [s for s in parts.path.split("/") if s]
        bucket = segments[0] if segments else "-"
        kind = self.command
        if kind == "GET" and len(segments) == 1:
            kind = "LIST"
        with lock:
            counts[(bucket, kind)] += 1

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            connection = upstream()
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                break
            except (http.client.HTTPException, OSError):
                connection.close()
                local.connection = None
                if attempt:
                    raise
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        data = response.read()
        if length is None or self.command != "HEAD":
            length = str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Proxy).serve_forever()
