# The one image of the backbone: every part is `backbone <subcommand>` (see compose.yaml).
# Installs exactly what uv.lock pins, without the dev group.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# Dependencies first (a layer that survives source edits), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY migrations ./migrations
RUN uv sync --frozen --no-dev --no-editable

RUN useradd --system --uid 10001 --home-dir /var/lib/backbone --create-home backbone
USER backbone

# Listen on every interface inside the container; logs as JSON lines on stderr.
ENV PATH=/app/.venv/bin:$PATH \
    BACKBONE_HOME=/var/lib/backbone \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json
EXPOSE 8000 9100

ENTRYPOINT ["backbone"]
CMD ["api"]
