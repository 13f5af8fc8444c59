FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["oms-shipments"]
