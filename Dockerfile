# One image for every promptctl process; docker-compose.yml picks the process
# with `python -m promptctl.processes NAME`, the same list `make demo` and CI use.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PROMPTCTL_VAR_DIR=/var/lib/promptctl \
    PROMPTCTL_BIND_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY promptctl ./promptctl
COPY triage ./triage
COPY evals ./evals
COPY manage.py ./
RUN pip install . && mkdir -p /var/lib/promptctl \
    && useradd --system --home /app promptctl && chown promptctl /var/lib/promptctl
USER promptctl

EXPOSE 8000
CMD ["python", "-m", "promptctl.processes", "web"]
