FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY turnlog turnlog
COPY contracts contracts
COPY domain domain
COPY projections projections
COPY services services
COPY examples examples
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
