# syntax=docker/dockerfile:1
# stepup-bff: `docker build -t stepup-bff .`, configured at run time by STEPUP_* variables (see README).

# Build stage: the wheel's build backend (hatchling) and pip's caches stay out of the final image.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# README.md is the package's readme in pyproject.toml; the build fails without it.
COPY pyproject.toml README.md ./
COPY src ./src
# The wheel carries the single-page app as stepup_bff/frontend (pyproject: force-include).
COPY frontend ./frontend
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STEPUP_SERVER__HOST=0.0.0.0 \
    STEPUP_SERVER__PORT=9000 \
    STEPUP_STORAGE__URL=sqlite:////data/stepup-bff.sqlite3 \
    STEPUP_DATABASE__URL=sqlite:////data/stepup-bff.sqlite3
# On its own the image keeps its state and records in SQLite on /data (one container); docker-compose.yml points
# both at Redis and PostgreSQL instead, which is what several replicas need.
# A fixed, unprivileged uid, so a mounted volume's ownership is predictable. /data is created here and owned by it:
# a new named volume copies that ownership, so the store is writable without running as root.
RUN groupadd --system --gid 10001 stepup \
    && useradd --system --uid 10001 --gid stepup --no-create-home --home-dir /app --shell /usr/sbin/nologin stepup \
    && mkdir -p /data \
    && chown stepup:stepup /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER stepup
VOLUME ["/data"]
EXPOSE 9000
# Liveness (/healthz touches neither FusionAuth nor the store), because orchestrators that act on this status (Swarm)
# replace unhealthy containers, and restarting the BFF does not bring FusionAuth back. Readiness is GET /readyz: the
# load balancer's check, and docker-compose.yml's healthcheck. The slim image has no curl, Python has urllib.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('STEPUP_SERVER__PORT', '9000') + '/healthz', timeout=2)"]
CMD ["stepup-bff", "serve"]
