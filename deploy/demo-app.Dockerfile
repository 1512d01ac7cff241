# The traced demo service: OpenTelemetry Python SDK + causeway's one-line hook (causeway_otel),
# exporting its spans over OTLP to the OpenTelemetry Collector.
FROM python:3.11-slim
RUN apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/*
RUN pip install -q 'opentelemetry-sdk>=1.30' 'opentelemetry-exporter-otlp-proto-grpc>=1.30' 'opentelemetry-exporter-otlp-proto-common>=1.30'
COPY context/ /opt/causeway/context/
RUN gcc -O2 -fPIC -shared -fvisibility=hidden -o /opt/causeway/context/python/causeway_otel/libcauseway_ctx.so /opt/causeway/context/c/causeway_ctx.c
COPY tests/trace/app.py /opt/causeway/app.py
ENV PYTHONPATH=/opt/causeway/context/python
ENTRYPOINT ["python3", "/opt/causeway/app.py"]
