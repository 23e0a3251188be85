# The onboarding platform's image: workers by default, migrations with
# `python -m onboarding.core.migrate` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The whole project (less what .dockerignore leaves out), installed as a package with its
# dependencies; worker.py also stays here to be run as a script.
COPY . .
RUN pip install --no-cache-dir .
# Bytecode for the code that runs from /app (worker.py imports workflows/ and onboarding/ from
# here, not from site-packages), which nothing would write otherwise (PYTHONDONTWRITEBYTECODE,
# and /app is read-only to the worker). Without it, the worker would compile them from source at
# every start (the workflow sandbox imports the workflow modules once per worker).
RUN python -m compileall -q /app

# Runs unprivileged; the code under /app stays owned by root, so read-only to the process.
RUN useradd --system --uid 10001 --user-group --create-home app
USER app

EXPOSE 9464

# The worker drains on SIGTERM (WORKER_GRACEFUL_SHUTDOWN_SECONDS); exec form, so python is PID 1
# and receives the signal itself.
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
