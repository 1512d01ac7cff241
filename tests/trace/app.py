"""A small traced service on the OpenTelemetry Python SDK, with causeway's one-line hook.

Each request is a root span `request` on a pool thread with two children: `lock_section`
acquires a lock that the `cw-holder` thread keeps for --hold-ms while it sleeps, and
`fsync_write` writes and fsyncs a file. Traces are written the way the OTel Collector's
awss3exporter lays them out: `<store>/traces/year=/month=/day=/hour=/minute=/traces_<id>.binpb`
(SDK's OTLP protobuf encoding) and, every other file, `.json` (otlp_json, hex ids).

Protocol: prints {"ready": pid} and waits for a line on stdin; prints a JSON summary at the end.
"""
import argparse
import base64
import ctypes
import datetime
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import causeway_otel


def set_thread_name(name: str) -> None:
    libc = ctypes.CDLL(None)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def hexify(obj):
    """OTLP JSON carries ids as hex, where protobuf's JSON mapping has base64."""
    if isinstance(obj, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                    else hexify(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [hexify(x) for x in obj]
    return obj


class ObjectStoreLayoutExporter(SpanExporter):
    def __init__(self, store: str, formats: str):
        self.root = os.path.join(store, "traces")
        self.formats = formats
        self.n = 0

    def export(self, spans):
        req = encode_spans(spans)
        now = datetime.datetime.now(datetime.timezone.utc)
        d = os.path.join(self.root, now.strftime("year=%Y/month=%m/day=%d/hour=%H/minute=%M"))
        os.makedirs(d, exist_ok=True)
        use_json = self.formats == "json" or (self.formats == "both" and self.n % 2 == 1)
        self.n += 1
        name = f"traces_{uuid.uuid4().hex}" + (".json" if use_json else ".binpb")
        data = (json.dumps(hexify(MessageToDict(req, use_integers_for_enums=True))).encode() if use_json else req.SerializeToString())
        tmp = os.path.join(d, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(d, name))  # readers never see a partial file
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--requests", type=int, default=4, help="0: serve forever (compose demo)")
    ap.add_argument("--otlp-endpoint", help="export spans over OTLP/gRPC here instead of writing files")
    ap.add_argument("--hold-ms", type=int, default=300)
    ap.add_argument("--formats", default="both", choices=["proto", "json", "both"])
    ap.add_argument("--no-hook", action="store_true")
    args = ap.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "cw-demo-shop"}))
    if args.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint, insecure=True)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ObjectStoreLayoutExporter(args.store, args.formats)))
    trace.set_tracer_provider(provider)
    if not args.no_hook:
        causeway_otel.install(provider)
    tracer = trace.get_tracer("cw-demo")

    lock = threading.Lock()
    holder_tid = []
    held = threading.Event()
    release_go = threading.Event()

    def holder():
        set_thread_name("cw-holder")
        holder_tid.append(threading.get_native_id())
        while True:
            release_go.wait()
            release_go.clear()
            with lock:
                held.set()
                time.sleep(args.hold_ms / 1000)  # a slow step inside the critical section
            if stop.is_set():
                return

    stop = threading.Event()
    path = os.path.join(args.store, f".fsync-{os.getpid()}")
    results = []

    def handle(i):
        set_thread_name(f"cw-worker")
        with tracer.start_as_current_span("request") as root:
            root.set_attribute("request.id", i)
            with tracer.start_as_current_span("lock_section") as ls:
                release_go.set()
                held.wait()
                held.clear()
                # a step of its own before the lock, so the lock wait starts well inside the
                # span, not within the context-publication margin of its start
                time.sleep(0.002)
                with lock:  # blocks in futex while cw-holder sleeps
                    pass
            with tracer.start_as_current_span("fsync_write") as fw:
                with open(path, "wb") as f:
                    f.write(os.urandom(8 << 20))
                    f.flush()
                    os.fsync(f.fileno())
            ctx = root.get_span_context()
            results.append({
                "trace_id": format(ctx.trace_id, "032x"),
                "root": format(ctx.span_id, "016x"),
                "lock_section": format(ls.get_span_context().span_id, "016x"),
                "fsync_write": format(fw.get_span_context().span_id, "016x"),
                "tid": threading.get_native_id(),
            })

    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
    h = threading.Thread(target=holder, daemon=True)
    h.start()
    with ThreadPoolExecutor(max_workers=2) as pool:
        i = 0
        while args.requests == 0 or i < args.requests:
            pool.submit(handle, i).result()  # one at a time: each waits on the holder
            i += 1
            if args.requests == 0:
                time.sleep(1)
    stop.set()
    provider.shutdown()
    try:
        os.unlink(path)
    except OSError:
        pass
    print(json.dumps({"pid": os.getpid(), "holder_tid": holder_tid[0], "requests": results}), flush=True)


if __name__ == "__main__":
    main()
