# syntax=docker/dockerfile:1
# One image for every role: `api` (default), `worker`, `indexes-sync`.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY indexes ./indexes
COPY devstack ./devstack
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/pip uninstall -y pip

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/pcj
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 APP_ENV=production PORT=8000
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request;urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT','8000')}/health\",timeout=2)"]
ENTRYPOINT ["pcj"]
CMD ["api"]
