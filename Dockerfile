# Touchpoint production image: gunicorn (web), Celery worker and beat all run from it.
# docker-compose.yml picks the command per service; configuration comes from the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Dependencies first, so a code change does not reinstall them (psycopg[binary] needs no compiler).
COPY requirements/base.lock requirements/base.lock
RUN pip install -r requirements/base.lock

COPY . .

# Static files are collected at build time (WhiteNoise serves them with hashed names). Settings
# need a SECRET_KEY to import; this one exists only during the build.
RUN SECRET_KEY=collectstatic-only-not-used-at-runtime python manage.py collectstatic --noinput -v 0 \
    && useradd --system --uid 10001 --home-dir /app touchpoint \
    && mkdir -p /app/var \
    && chown -R touchpoint /app/var

USER touchpoint
EXPOSE 8000

CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
