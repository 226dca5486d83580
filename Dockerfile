# One image for every promptctl process. docker-compose.yml picks the process with
# `python -m config.processes NAME`, the list `make demo` and CI start natively;
# the default command below is the web process from the same list.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_DEBUG=false \
    PROMPTCTL_VAR_DIR=/var/lib/promptctl \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    PROMPTCTL_BIND_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, from pyproject.toml's own pinned list, so a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code runs from this source tree, as in CI: manage.py, templates, the emulator's
# lexicon.json and evals/data come with it (.dockerignore keeps everything else out).
COPY manage.py ./
COPY config ./config
COPY managed_agents ./managed_agents
COPY promptctl ./promptctl
COPY evals ./evals
COPY triage ./triage

# With DEBUG off WhiteNoise serves hashed files from a manifest that only collectstatic
# writes. Settings must load to run it; this key and host are build-time throwaways,
# not secrets: the running containers get theirs from the environment.
RUN DJANGO_DEBUG=false \
    DJANGO_SECRET_KEY=collectstatic-at-image-build-time-only-never-used-to-sign-anything \
    DJANGO_ALLOWED_HOSTS=build.invalid \
    PROMPTCTL_AUDIT_KEY=collectstatic-at-image-build-time-only-never-used-to-mac-anything \
    PROMPTCTL_VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-var

# An unprivileged user that owns only the state directory (SQLite when no DATABASE_URL,
# the beat schedule, the file rate limiter); the code and static files stay read-only.
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin promptctl \
    && mkdir -p /var/lib/promptctl \
    && chown promptctl:promptctl /var/lib/promptctl
USER promptctl

EXPOSE 8000 8765
CMD ["python", "-m", "config.processes", "web"]
