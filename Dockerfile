# bulkgroups in a container, for `bulkgroups schedule JOB.toml --kubernetes`.
#   docker build -t registry.example.com/bulkgroups:0.1.0 .
# The package is built as a wheel in one stage and installed into a clean image in the
# next, so the image holds no build tools and no source tree. It runs as an unprivileged
# user (uid 10001, the CronJob's runAsUser) with /data (the results volume) as its folder.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bulkgroups ./bulkgroups
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 bulkgroups \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin bulkgroups \
    && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["bulkgroups"]
CMD ["--help"]
