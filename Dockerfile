# PGx Pain CDS: one container, configured with PGX_CDS_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PGX_CDS_KNOWLEDGE_DIR=/app/knowledge \
    PGX_CDS_DATABASE_URL=sqlite:////data/feedback.sqlite3

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY knowledge ./knowledge
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home /data pgx \
    && mkdir -p /data && chown pgx /data

USER pgx
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["pgx-cds", "serve", "--host", "0.0.0.0", "--port", "8080"]
