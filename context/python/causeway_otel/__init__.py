"""Publish the current OpenTelemetry span of each thread to causeway.

One line in the application::

    import causeway_otel; causeway_otel.install()

From then on every context attach/detach of the OpenTelemetry Python API (span activation with
``start_as_current_span``/``use_span``, ``context.attach``/``detach``) publishes the thread's current
span through ``libcauseway_ctx.so`` (OTEP-4947 thread-context record plus the
``causeway_ctx_publish`` probe point). causeway-collector uprobes that function and tags every
kernel event of the thread (off-CPU, run-queue, futex, I/O) with the span in the kernel.

``install(tracer_provider)`` also adds a span processor that records ``thread.id``,
``thread.name`` and ``process.pid`` on each span, so kernel events that carry no tag can still be
joined by thread and time window.

The library is found through ``$CAUSEWAY_CTX_LIB``, next to this package, or the loader's search
path. Without it ``install`` raises ``CausewayContextError`` (or returns False with
``required=False``): the application keeps working, only untagged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

__all__ = ["install", "uninstall", "CausewayContextError", "ThreadAttributesProcessor", "library_path"]

_lock = threading.Lock()
_installed = None  # the wrapper runtime context, once installed


class CausewayContextError(RuntimeError):
    """The writer library cannot be loaded or the OpenTelemetry API is missing."""


def library_path() -> str | None:
    """Where libcauseway_ctx.so is looked for first: $CAUSEWAY_CTX_LIB, then the package dir."""
    env = os.environ.get("CAUSEWAY_CTX_LIB")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libcauseway_ctx.so")
    if os.path.exists(here):
        return here
    return ctypes.util.find_library("causeway_ctx")


def _load():
    path = library_path()
    if not path:
        raise CausewayContextError(
            "libcauseway_ctx.so not found: set CAUSEWAY_CTX_LIB to its path "
            "(built by `cargo build -p causeway-context`, or `cc -shared -fPIC -O2 "
            "-fvisibility=hidden -o libcauseway_ctx.so context/c/causeway_ctx.c`)"
        )
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise CausewayContextError(f"cannot load {path}: {e}") from e
    u64 = ctypes.c_uint64
    lib.causeway_ctx_set_ids.argtypes = [u64, u64, u64, ctypes.c_uint8]
    lib.causeway_ctx_set_ids.restype = None
    lib.causeway_ctx_clear.argtypes = []
    lib.causeway_ctx_clear.restype = None
    return lib


_MASK64 = (1 << 64) - 1


class _Publisher:
    """Publishes a thread's span only when it changes (each publish costs a uprobe trap)."""

    def __init__(self, lib):
        self._lib = lib
        self._set = lib.causeway_ctx_set_ids
        self._clear = lib.causeway_ctx_clear
        self._last = threading.local()

    def publish(self, span_context) -> None:
        sid = span_context.span_id if span_context is not None and span_context.is_valid else 0
        last = self._last
        if getattr(last, "sid", 0) == sid:
            return  # span ids are unique: same id, same context
        last.sid = sid
        if sid == 0:
            self._clear()
        else:
            tid = span_context.trace_id
            self._set(tid >> 64, tid & _MASK64, sid, span_context.trace_flags)


def _wrapper_class():
    from opentelemetry import trace
    from opentelemetry.context.context import _RuntimeContext

    class PublishingRuntimeContext(_RuntimeContext):
        """Wraps the API's runtime context: every attach/detach publishes the current span."""

        def __init__(self, inner, publisher):
            self._inner = inner
            self._publisher = publisher

        def _publish_current(self):
            ctx = self._inner.get_current()
            self._publisher.publish(trace.get_current_span(ctx).get_span_context())

        def attach(self, context):
            token = self._inner.attach(context)
            self._publish_current()
            return token

        def get_current(self):
            return self._inner.get_current()

        def detach(self, token):
            self._inner.detach(token)
            self._publish_current()

    return PublishingRuntimeContext


try:  # the SDK's base class carries the hooks newer SDKs call (_on_ending ...)
    from opentelemetry.sdk.trace import SpanProcessor as _SpanProcessorBase
except ImportError:  # API only: the processor is never registered
    _SpanProcessorBase = object


class ThreadAttributesProcessor(_SpanProcessorBase):
    """A SpanProcessor that records the thread and process a span started on."""

    def on_start(self, span, parent_context=None):
        span.set_attribute("thread.id", threading.get_native_id())
        span.set_attribute("thread.name", threading.current_thread().name)
        span.set_attribute("process.pid", os.getpid())

    def on_end(self, span):
        pass


def install(tracer_provider=None, required: bool = True) -> bool:
    """Hook the OpenTelemetry context so each thread's current span reaches causeway.

    tracer_provider: an SDK TracerProvider to add ThreadAttributesProcessor to (optional).
    required: raise CausewayContextError when the library is missing (else return False).
    Idempotent; returns True when the hook is active.
    """
    global _installed
    with _lock:
        if _installed is not None:
            return True
        try:
            import opentelemetry.context as otel_context
        except ImportError as e:
            if required:
                raise CausewayContextError("opentelemetry-api is not installed") from e
            return False
        try:
            lib = _load()
        except CausewayContextError:
            if required:
                raise
            return False
        wrapper = _wrapper_class()(otel_context._RUNTIME_CONTEXT, _Publisher(lib))
        otel_context._RUNTIME_CONTEXT = wrapper
        _installed = wrapper
    if tracer_provider is not None and hasattr(tracer_provider, "add_span_processor"):
        tracer_provider.add_span_processor(ThreadAttributesProcessor())
    return True


def uninstall() -> None:
    """Restore the original runtime context (spans stop being published)."""
    global _installed
    import opentelemetry.context as otel_context

    with _lock:
        if _installed is not None and otel_context._RUNTIME_CONTEXT is _installed:
            otel_context._RUNTIME_CONTEXT = _installed._inner
            _installed._publisher._lib.causeway_ctx_clear()
        _installed = None
