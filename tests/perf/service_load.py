#!/usr/bin/env python3
"""A realistic service load for the overhead benchmark (P2b): an HTTP server whose handler
threads share a lock-protected cache and a small thread pool (futex-heavy, like a service's
connection pool), driven by a bounded local load generator (fixed clients with keep-alive, no
think time). Prints one JSON object: requests per second over the measured seconds.

Usage: python3 service_load.py [--seconds 5] [--clients 8]
"""
import argparse
import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CACHE = {}
LOCK = threading.Lock()
POOL = ThreadPoolExecutor(max_workers=4)


def work(n):
    # a little CPU, then a shared-state update under the lock
    s = sum(i * i for i in range(200))
    with LOCK:
        CACHE[n % 512] = s
    return s


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # one write per response, no Nagle: otherwise delayed ACKs (40 ms) set the pace, not the work
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[-1] or 0)
        body = str(POOL.submit(work, n).result()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    counts = [0] * a.clients
    stop = time.monotonic() + 0.5 + a.seconds
    measure_from = time.monotonic() + 0.5  # warm-up

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = 0
        while True:
            now = time.monotonic()
            if now >= stop:
                break
            c.request("GET", f"/r/{n}")
            c.getresponse().read()
            n += 1
            if now >= measure_from:
                counts[k] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    srv.shutdown()
    print(json.dumps({"requests_per_s": sum(counts) / a.seconds, "requests": sum(counts)}))


if __name__ == "__main__":
    main()
