# The console, the receivers and the collectors share one image; the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY store ./store
COPY collectors ./collectors
COPY actions ./actions
COPY console ./console
COPY data ./data
COPY assets ./assets
RUN pip install --no-cache-dir ".[scale]"
EXPOSE 8050
CMD ["quarterdeck", "serve", "--host", "0.0.0.0"]
