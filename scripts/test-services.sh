# Sourced by `make test`: makes sure RabbitMQ and PostgreSQL answer before the tests run, and
# tells the tests (OMS_TEST_* variables, read by tests/harness.py) how to reach them.
#
# Local services (127.0.0.1:5672 guest/guest with rabbitmqctl, 127.0.0.1:5432 postgres with
# trust) are used when they answer. Where Docker runs, a service missing here is started from
# docker-compose.yml, and a service docker-compose.yml already runs (an earlier `make test`
# started it, or `docker compose up`) is used with the credentials docker-compose.yml gives
# it: those ports are the containers'. Without either, this stops at once and says what is
# missing and how to start it.

# As docker-compose.yml sets them (tests/integration/test_test_services_script.py keeps them equal).
_COMPOSE_RABBIT_USER=oms
_COMPOSE_RABBIT_PASSWORD=oms-secret
_COMPOSE_PG_USER=oms
_COMPOSE_PG_PASSWORD=oms-secret
_COMPOSE_PG_DATABASE=oms
_COMPOSE_WAIT_S=90

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_docker_usable() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

_compose_runs() { [ -n "$(docker compose ps -q --status running "$1" 2>/dev/null)" ]; }

_use_compose_service() {
  case "$1" in
    rabbitmq)
      export OMS_TEST_RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl"
      export OMS_TEST_RABBIT_USER=$_COMPOSE_RABBIT_USER OMS_TEST_RABBIT_PASSWORD=$_COMPOSE_RABBIT_PASSWORD ;;
    postgres)
      export OMS_TEST_PG_DSN="postgresql://$_COMPOSE_PG_USER:$_COMPOSE_PG_PASSWORD@127.0.0.1:5432/$_COMPOSE_PG_DATABASE" ;;
  esac
}

# Docker's port forwarding accepts connections before the server in the container does:
# ask the server itself. PostgreSQL's image first runs a server on its socket only, hence -h.
_compose_service_ready() {
  case "$1" in
    rabbitmq) docker compose exec -T rabbitmq rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 ;;
    postgres) docker compose exec -T postgres pg_isready -q -h 127.0.0.1 -U "$_COMPOSE_PG_USER" >/dev/null 2>&1 ;;
  esac
}

_wait_for_compose_services() {
  local service
  for _ in $(seq 1 "$_COMPOSE_WAIT_S"); do
    for service in "$@"; do
      _compose_service_ready "$service" || continue 2
    done
    return 0
  done
  echo "$* from docker-compose.yml did not answer within $_COMPOSE_WAIT_S s" >&2
  return 1
}

_oms_services_ready() {
  local docker="" composed="" missing="" to_start="" service
  _docker_usable && docker=yes
  if [ -n "$docker" ]; then
    for service in rabbitmq postgres; do
      _compose_runs "$service" && composed="$composed $service"
    done
  fi
  _port_open 5672 || case " $composed " in *" rabbitmq "*) ;; *) missing="$missing RabbitMQ(127.0.0.1:5672)"; to_start="$to_start rabbitmq" ;; esac
  _port_open 5432 || case " $composed " in *" postgres "*) ;; *) missing="$missing PostgreSQL(127.0.0.1:5432)"; to_start="$to_start postgres" ;; esac
  if [ -n "$to_start" ] && [ -n "$docker" ]; then
    echo "Not reachable:$missing — starting$to_start from docker-compose.yml" >&2
    # shellcheck disable=SC2086  # one word per service
    docker compose up -d $to_start >&2 || return 1
    composed="$composed $to_start"
    to_start=""
  fi
  if [ -z "$to_start" ]; then
    for service in $composed; do
      _use_compose_service "$service"
    done
    # shellcheck disable=SC2086
    [ -z "$composed" ] || _wait_for_compose_services $composed
    return
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
