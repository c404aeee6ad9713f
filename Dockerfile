# stream-warmer: one image for every process (serve, train, replay, topics).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir stream_warmer && touch stream_warmer/__init__.py \
    && pip install . && pip uninstall -y stream-warmer && rm -rf stream_warmer

COPY stream_warmer ./stream_warmer
COPY config ./config
RUN pip install --no-deps . \
    && useradd --system --uid 10001 warmer
USER warmer

# /metrics and /healthz
EXPOSE 9108
ENTRYPOINT ["stream-warmer"]
CMD ["serve"]
