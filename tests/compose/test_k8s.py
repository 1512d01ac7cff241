"""deploy/k8s/causeway.yaml checked without a cluster: least privilege (no privileged pod, only the
capabilities eBPF needs), the mounts the collector needs, flags the real binaries accept, and a
query config that the real binary loads."""
import os
import re
import subprocess
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAUSEWAY_BIN_DIR", "/var/cache/causeway/target/release")


def docs():
    with open(os.path.join(ROOT, "deploy/k8s/causeway.yaml")) as f:
        return {d["kind"]: d for d in yaml.safe_load_all(f) if d}


def flags_ok(binary, sub, args):
    h = subprocess.run([os.path.join(BIN, binary), sub, "--help"], capture_output=True, text=True).stdout
    for a in args:
        if a.startswith("--"):
            assert re.search(rf"(^|\s){re.escape(a)}[\s=,]", h), f"{a} is not a flag of `{binary} {sub}`"


def test_collector_daemonset_least_privilege():
    ds = docs()["DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    c = spec["containers"][0]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == {"BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/bpf", "/sys/fs/cgroup"} <= mounts
    assert c["command"] == ["causeway-collector", "run"]
    flags_ok("causeway-collector", "run", c["args"])
    assert "$(NODE_NAME)" in c["args"], "the host partition is the node name"


def test_query_deployment_is_unprivileged_and_its_config_loads():
    d = docs()
    dep = d["Deployment"]["spec"]["template"]["spec"]
    assert dep["securityContext"]["runAsNonRoot"] is True
    c = dep["containers"][0]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    flags_ok("causeway-query", "serve", c["args"])
    cfg = d["ConfigMap"]["data"]["query.yaml"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
    r = subprocess.run([os.path.join(BIN, "causeway-query"), "serve", "--stdio", "--config", f.name,
                        "--store", "/nonexistent-store"], capture_output=True, text=True, input="")
    os.unlink(f.name)
    assert r.returncode != 2 and "invalid config" not in r.stderr, r.stderr
    assert d["Service"]["spec"]["ports"][0]["port"] == 8700
