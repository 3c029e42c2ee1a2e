# PGx Pain CDS: one container, configured with PGX_CDS_* environment variables (see README).
# Runs as uid 10001 with a read-only root filesystem: it writes only to /data (the SQLite
# feedback database, when no PostgreSQL is configured) and /tmp (mount a tmpfs there).

# -- build: the wheel and a venv with pinned dependencies (constraints.txt) -----------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY cds_service ./cds_service
COPY knowledge ./knowledge
COPY sandbox ./sandbox
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt \
        "$(ls /wheels/pgx_pain_cds-*.whl)[postgres]" \
    && /opt/venv/bin/pip uninstall --yes pip

# -- run: the venv only; no compilers, no build tools, no source tree ------------------------
FROM python:3.11-slim
# The package's version (pyproject.toml; tests/test_packaging.py keeps them equal) and where
# the source is: build with --build-arg SOURCE_URL=<your repository's URL>.
ARG VERSION=0.2.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="pgx-pain-cds" \
      org.opencontainers.image.description="CDS Hooks service: pharmacogenomic alerts for pain medications (CPIC, FDA labels)" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="$SOURCE_URL"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TMPDIR=/tmp \
    PGX_CDS_HOST=0.0.0.0 \
    PGX_CDS_PORT=8080 \
    PGX_CDS_DATABASE_URL=sqlite:////data/feedback.sqlite3
RUN useradd --system --uid 10001 --gid 0 --home-dir /data --no-create-home pgx \
    && mkdir -p /data && chown 10001:0 /data && chmod 0770 /data
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PGX_CDS_PORT'], timeout=2)"]
# pgx-cds is PID 1: gunicorn's master, which stops gracefully on SIGTERM within 3 s.
STOPSIGNAL SIGTERM
CMD ["pgx-cds", "serve"]
