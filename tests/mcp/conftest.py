"""What the MCP tests share: a recording of the mutex scenario by the real collector, and the
query server over Streamable HTTP."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import shutil
import time
import urllib.error
import urllib.request

import pytest

BIN = os.environ.get("CAUSEWAY_BIN_DIR", "/var/cache/causeway/target/release")
COLLECTOR = os.path.join(BIN, "causeway-collector")
TESTKIT = os.path.join(BIN, "causeway-testkit")
QUERY = os.path.join(BIN, "causeway-query")
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="session")
def recording():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("recording needs root to load BPF programs, and CI must not skip it")
        pytest.skip("*** SKIPPED: recording needs root to load BPF programs ***")
    tmp = tempfile.mkdtemp(prefix="causeway-mcp-")
    store = os.path.join(tmp, "store")
    pid, result = record([TESTKIT, "workload", "mutex", "--hold", "200ms"], store)
    cfg = os.path.join(tmp, "query.yaml")
    with open(cfg, "w") as f:
        f.write("security:\n  query_timeout_s: 3\n  rate_limit_per_second: 50\n  max_rows: 100\n"
                "http:\n  header_timeout_s: 2\n")
    yield {"store": store, "pid": pid, "holder": result["holder_tid"], "waiter": result["waiter_tid"], "config": cfg}
    shutil.rmtree(tmp, ignore_errors=True)


def record(workload, store, collector_args=()):
    """Runs a workload that prints {"ready": pid} and waits for a line on stdin, under the real
    collector tracing its pid; returns the pid and the workload's result line."""
    ready = store + ".ready"
    w = subprocess.Popen(workload + ["--wait-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = json.loads(w.stdout.readline())["ready"]
    c = subprocess.Popen([COLLECTOR, "run", "--pid", str(pid), "--store", store, "--ready-file", ready,
                          "--flush-interval", "1s", *collector_args], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not os.path.exists(ready):
        assert c.poll() is None and time.time() < deadline, "collector did not attach"
        time.sleep(0.05)
    w.stdin.write("go\n")
    w.stdin.flush()
    result = json.loads(w.stdout.readline())
    w.wait()
    time.sleep(0.3)
    c.send_signal(signal.SIGINT)
    assert c.wait(timeout=60) == 0
    return pid, result


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture()
def http_server(recording):
    port = free_port()
    env = dict(os.environ, CAUSEWAY_MCP_TOKEN=TOKEN)
    p = subprocess.Popen([QUERY, "serve", "--http", f"127.0.0.1:{port}", "--store", recording["store"],
                          "--config", recording["config"]], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert p.poll() is None and time.time() < deadline, "server did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    p.terminate()
    p.wait(timeout=10)


def post(url, headers, body=None):
    body = body or json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream", **headers}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=h), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


