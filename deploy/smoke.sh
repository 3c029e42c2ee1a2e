#!/usr/bin/env bash
# Container checks, as hospital IT would do them: build the image from the Dockerfile, then run
# tests/integration/test_container.py against it (non-root, read-only root filesystem with a
# tmpfs, feedback in a real PostgreSQL, stop within 5 s of SIGTERM, two replicas on one
# database answering identically, a clear message for an unwritable /data). Takes minutes.
#
#   deploy/smoke.sh                      # build with podman, then test
#   PGX_CDS_IMAGE=pgx-pain-cds:1.0 SKIP_BUILD=1 deploy/smoke.sh   # test an existing image
#
# Needs podman and the PostgreSQL server binaries (initdb, pg_ctl); uses .venv (see README).
# On a host where podman needs them (e.g. no Docker Hub, runc only) set for example
#   BUILD_FLAGS="--pull=never --isolation=chroot --network=host"
#   PGX_CDS_CONTAINER_RUN_FLAGS="--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096"
set -euo pipefail
cd "$(dirname "$0")/.."

export PGX_CDS_IMAGE="${PGX_CDS_IMAGE:-localhost/pgx-pain-cds:smoke}"
if [ -z "${SKIP_BUILD:-}" ]; then
  # shellcheck disable=SC2086  # BUILD_FLAGS is a list of flags
  podman build ${BUILD_FLAGS:-} --format docker -t "$PGX_CDS_IMAGE" .
fi
podman image inspect --format '{{.Size}}' "$PGX_CDS_IMAGE" \
  | awk '{printf "image size: %.0f MB\n", $1 / 1e6}'
exec .venv/bin/pytest -v tests/integration/test_container.py "$@"
