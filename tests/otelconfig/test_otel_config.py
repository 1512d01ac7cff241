"""otel-config/: the OpenTelemetry Collector configurations are checked against the components'
documented settings (there is no container runtime here to start the Collector itself), and the
trace layout they write must be the one causeway-query's app_spans reads."""
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = ["collector.yaml", "collector-local.yaml"]

# component type -> settings the Collector (contrib) documents for it; unknown keys fail to load
KNOWN = {
    "receivers": {"otlp": {"protocols"}},
    "processors": {"memory_limiter": {"check_interval", "limit_percentage", "spike_limit_percentage",
                                      "limit_mib", "spike_limit_mib"},
                   "batch": {"send_batch_size", "send_batch_max_size", "timeout"}},
    "exporters": {"otlp": {"endpoint", "tls", "headers", "compression", "retry_on_failure", "sending_queue"},
                  "otlphttp": {"endpoint", "tls", "headers", "compression", "retry_on_failure", "sending_queue"},
                  "awss3": {"s3uploader", "marshaler", "sending_queue", "timeout"},
                  "file": {"path", "format", "rotation", "compression", "flush_interval"},
                  "debug": {"verbosity"}},
}
S3UPLOADER = {"region", "s3_bucket", "s3_prefix", "s3_partition_format", "file_prefix", "endpoint",
              "s3_force_path_style", "disable_ssl", "compression", "role_arn"}


def load(name):
    with open(os.path.join(ROOT, "otel-config", name)) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("name", CONFIGS)
def test_components_are_known_and_pipelines_reference_defined_ones(name):
    cfg = load(name)
    for section, known in KNOWN.items():
        for comp, settings in (cfg.get(section) or {}).items():
            ctype = comp.split("/")[0]
            assert ctype in known, f"{name}: unknown {section[:-1]} type {ctype!r}"
            extra = set(settings or {}) - known[ctype]
            assert not extra, f"{name}: {comp} has settings the component does not document: {extra}"
    pipelines = cfg["service"]["pipelines"]
    assert {"traces", "logs"} <= set(pipelines), name
    for pname, p in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for comp in p.get(section, []):
                assert comp in (cfg.get(section) or {}), f"{name}: pipeline {pname} uses undefined {comp}"
        assert p["receivers"] and p["exporters"], f"{name}: pipeline {pname} is incomplete"
    grpc = cfg["receivers"]["otlp"]["protocols"]
    assert grpc["grpc"]["endpoint"].endswith(":4317") and grpc["http"]["endpoint"].endswith(":4318")


def test_object_storage_layout_is_what_app_spans_reads():
    cfg = load("collector.yaml")
    s3 = cfg["exporters"]["awss3/traces"]
    up = s3["s3uploader"]
    assert not set(up) - S3UPLOADER, set(up) - S3UPLOADER
    # causeway-query reads traces/ under the store root (query-mcp/src/spans.rs TRACES_PREFIX)
    src = open(os.path.join(ROOT, "query-mcp/src/spans.rs")).read()
    prefix = re.search(r'pub const TRACES_PREFIX: &str = "([^"]+)"', src).group(1)
    assert up["s3_prefix"] == prefix
    assert up["s3_partition_format"] == "year=%Y/month=%m/day=%d/hour=%H/minute=%M"
    # otlp_proto objects end in .binpb, otlp_json in .json: both are read
    assert s3["marshaler"] in ("otlp_proto", "otlp_json")
    assert ".binpb" in src and ".json" in src
    assert "awss3/traces" in cfg["service"]["pipelines"]["traces"]["exporters"]
    local = load("collector-local.yaml")
    path = local["exporters"]["file/traces"]["path"]
    assert f"/{prefix}/" in path and path.endswith(".json") and local["exporters"]["file/traces"]["format"] == "json"
