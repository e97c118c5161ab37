# The console, the receivers and the collectors share one image; the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY store ./store
COPY collectors ./collectors
COPY actions ./actions
COPY providers ./providers
COPY evidence ./evidence
COPY egress ./egress
COPY demo ./demo
COPY console ./console
COPY data ./data
COPY assets ./assets
# `scale` brings gunicorn: console workers (console.wsgi:server), receivers (:receivers).
RUN pip install --no-cache-dir ".[scale]"
EXPOSE 8050 8051
CMD ["quarterdeck", "serve", "--host", "0.0.0.0"]
