# Production image: `serve` only (no sandbox, no migrations at start; run `bankfeeds-bff migrate` as a job).
# Checked without a Docker engine by tests/test_image.py: hadolint, and these same steps in a fresh venv.
FROM python:3.11.14-slim-trixie AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Every dependency, and the build backend, pinned with hashes (make lock); then the app alone, no resolving.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11.14-slim-trixie
# BANKFEEDS_PORT: where `serve` listens and what the health check asks. FORWARDED_ALLOW_IPS: the load
# balancers whose X-Forwarded-For/-Proto are believed (set it to their addresses, or * behind a private one).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    BANKFEEDS_PORT=8000 FORWARDED_ALLOW_IPS=127.0.0.1
RUN groupadd --system --gid 10001 bff && useradd --system --uid 10001 --gid 10001 --home-dir /srv bff
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY alembic.ini ./
COPY migrations ./migrations
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["bankfeeds-bff", "healthcheck"]
CMD ["bankfeeds-bff", "serve", "--host", "0.0.0.0"]
