# Sourced by `make test`: makes sure RabbitMQ and PostgreSQL answer before the tests run.
# Local services (127.0.0.1:5672 guest/guest, 127.0.0.1:5432 postgres trust) are used when
# they answer; otherwise, where Docker can run containers, RabbitMQ and PostgreSQL are
# started from docker-compose.yml and the tests are pointed at them; otherwise this stops
# at once and says what is missing and how to start it.

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_oms_services_ready() {
  local missing=""
  _port_open 5672 || missing="$missing RabbitMQ(127.0.0.1:5672)"
  _port_open 5432 || missing="$missing PostgreSQL(127.0.0.1:5432)"
  if [ -z "$missing" ]; then
    return 0
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "Not reachable:$missing — starting RabbitMQ and PostgreSQL from docker-compose.yml" >&2
    docker compose up -d rabbitmq postgres >&2 || return 1
    export OMS_TEST_RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl"
    export OMS_TEST_RABBIT_USER=oms OMS_TEST_RABBIT_PASSWORD=oms-secret
    export OMS_TEST_PG_DSN=postgresql://oms:oms-secret@127.0.0.1:5432/oms
    for _ in $(seq 1 90); do
      if _port_open 5672 && _port_open 5432 && docker compose exec -T rabbitmq rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        return 0
      fi
      sleep 1
    done
    echo "RabbitMQ or PostgreSQL from docker-compose.yml did not answer within 90 s" >&2
    return 1
  fi
  cat >&2 <<MSG
The tests need a real RabbitMQ and PostgreSQL; not reachable:$missing.
Start them, then run make test again:
  RabbitMQ 3.10+:  rabbitmq-server -detached          (guest/guest, rabbitmqctl on the PATH)
  PostgreSQL 15:   pg_ctlcluster --skip-systemctl-redirect \$(pg_lsclusters -h | awk '{print \$1; exit}') main start
                   (user postgres with trust auth on 127.0.0.1)
or install Docker and let make test start them from docker-compose.yml.
MSG
  return 1
}
