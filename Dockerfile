# stream-warmer: one image for every process (serve, load, train, replay, topics).

# The native hot path (native/: Rust, PyO3) as a wheel; the toolchain stays in this stage.
FROM python:3.11-slim-bookworm AS native
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates gcc libc6-dev \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
COPY native /src/native
RUN pip install maturin==1.16.0 && maturin build --release --locked -m /src/native/Cargo.toml -o /wheels

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, exactly as locked (hashes checked), so code changes do not
# reinstall torch. The uv version is the one scripts/bootstrap pins.
COPY pyproject.toml uv.lock ./
RUN pip install uv==0.13.9 \
    && uv export --locked --no-dev --extra plot --no-emit-project \
         --no-emit-package stream-warmer-native -o /tmp/requirements.txt \
    && pip install --require-hashes -r /tmp/requirements.txt \
    && pip uninstall -y uv && rm /tmp/requirements.txt
COPY --from=native /wheels /wheels
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels

# The package, with the trace it ships (stream_warmer/data/traces) for `replay`.
COPY README.md ./
COPY stream_warmer ./stream_warmer
COPY config ./config
RUN pip install --no-deps . \
    && useradd --system --uid 10001 warmer
USER warmer

# /metrics and /healthz
EXPOSE 9108
ENTRYPOINT ["stream-warmer"]
CMD ["serve"]
