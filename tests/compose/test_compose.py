"""compose.yaml and the deploy files, checked without a container runtime (there is none here):
structure, the privileges each service gets, and that every command line uses flags the real
binaries accept (their --help) and config files that load."""
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAUSEWAY_BIN_DIR", "/var/cache/causeway/target/release")


def compose():
    with open(os.path.join(ROOT, "compose.yaml")) as f:
        return yaml.safe_load(f)


def flags(argv):
    return [a.split("=")[0] for a in argv if a.startswith("--")]


def help_text(binary, sub):
    r = subprocess.run([os.path.join(BIN, binary), sub, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_services_and_privileges():
    c = compose()
    s = c["services"]
    assert {"minio", "otel-collector", "jaeger", "causeway-collector", "causeway-query", "demo-app"} <= set(s)
    col = s["causeway-collector"]
    assert col["privileged"] is True and col["pid"] == "host"
    mounts = " ".join(col["volumes"])
    for m in ("/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/bpf"):
        assert m in mounts, m
    q = s["causeway-query"]
    assert "privileged" not in q and q.get("user") not in (None, "0", "root") and q.get("read_only") is True
    assert "CAUSEWAY_MCP_TOKEN" in q["environment"]
    # only the collector is privileged
    assert [n for n, v in s.items() if v.get("privileged")] == ["causeway-collector"]
    # ports are bound to loopback only
    for n, v in s.items():
        for p in v.get("ports", []):
            assert p.startswith("127.0.0.1:"), (n, p)


def test_command_lines_use_real_flags():
    s = compose()["services"]
    for svc, binary, sub in (("causeway-collector", "causeway-collector", "run"),
                             ("causeway-query", "causeway-query", "serve")):
        argv = s[svc]["command"]
        assert argv[0] == binary and argv[1] == sub, argv
        text = help_text(binary, sub)
        for f in flags(argv):
            assert re.search(rf"(^|\s){re.escape(f)}[\s=,]", text), f"{svc}: {f} is not a flag of `{binary} {sub}`"
    app = s["demo-app"]["command"]
    src = open(os.path.join(ROOT, "tests/trace/app.py")).read()
    for f in flags(app):
        assert f'"{f}"' in src, f"demo-app: {f} is not an option of tests/trace/app.py"


def test_shared_settings_agree():
    c = compose()
    s = c["services"]
    bucket = s["otel-collector"]["environment"]["CAUSEWAY_BUCKET"]
    assert f"s3://{bucket}" in s["causeway-collector"]["command"]
    assert f"s3://{bucket}" in s["causeway-query"]["command"]
    assert "otel-collector:4317" in " ".join(s["causeway-collector"]["command"])
    cfg = s["causeway-query"]["command"][s["causeway-query"]["command"].index("--config") + 1]
    local = os.path.join(ROOT, "config", os.path.basename(cfg))
    assert os.path.exists(local), local
    with open(local) as f:
        q = yaml.safe_load(f)
    assert "causeway-query" in q["http"]["allowed_hosts"]
    # the query config loads in the real binary (unknown keys would be refused)
    r = subprocess.run([os.path.join(BIN, "causeway-query"), "serve", "--stdio", "--config", local,
                        "--store", "/nonexistent-store"], capture_output=True, text=True, input="")
    assert r.returncode != 2 and "invalid config" not in r.stderr, r.stderr
    vol = s["otel-collector"]["volumes"][0].split(":")[0]
    assert os.path.exists(os.path.join(ROOT, vol)), vol
    for svc in ("causeway-collector", "causeway-query", "demo-app"):
        df = s[svc]["build"]["dockerfile"]
        assert os.path.exists(os.path.join(ROOT, df)), df
