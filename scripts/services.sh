#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ listen on their default local ports,
# starting locally installed ones that are stopped. It never installs
# anything and never touches a service that is already running.
#
#   scripts/services.sh          # check, start if needed, wait until ready
#
# Override the addresses with PGHOST/PGPORT and AMQP_HOST/AMQP_PORT.
set -euo pipefail

pg_host=${PGHOST:-127.0.0.1}
pg_port=${PGPORT:-5432}
amqp_host=${AMQP_HOST:-127.0.0.1}
amqp_port=${AMQP_PORT:-5672}

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 2; i++)); do
    listening "$2" "$3" && { echo "$1 is listening on $2:$3"; return 0; }
    sleep 0.5
  done
  echo "error: $1 is not listening on $2:$3 after $4 s" >&2
  return 1
}

if ! listening "$pg_host" "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  else
    echo "error: PostgreSQL is not listening on $pg_host:$pg_port and no local installation was found" >&2
    exit 1
  fi
fi
wait_for PostgreSQL "$pg_host" "$pg_port" 30

if ! listening "$amqp_host" "$amqp_port"; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
  else
    echo "error: RabbitMQ is not listening on $amqp_host:$amqp_port and no local installation was found" >&2
    exit 1
  fi
fi
wait_for RabbitMQ "$amqp_host" "$amqp_port" 90
