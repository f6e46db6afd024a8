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

# Whether the broker answers the AMQP 0-9-1 protocol header with a frame
# (Connection.Start is a method frame, type 1). A broker out of file
# descriptors keeps listening but never answers, and every test would then
# wait out its own deadline instead of failing here with the reason.
answers_amqp() {
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "AMQP\000\000\011\001" >&3 && head -c 1 <&3' "$1" "$2" 2>/dev/null |
    od -An -tx1 | grep -q 01
}

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 2; i++)); do
    listening "$2" "$3" && { echo "$1 is listening on $2:$3"; return 0; }
    sleep 0.5
  done
  echo "error: $1 is not listening on $2:$3 after $4 s" >&2
  return 1
}

# Starts the local broker with as many file descriptors as the hard limit
# allows: the test suites open hundreds of connections, and the 1024 that
# `su` (which rabbitmq-server uses to drop root) resets the soft limit to
# wedges the broker. As root, drop to the rabbitmq user with setpriv, which
# keeps the raised limit; otherwise start it as installed.
start_rabbitmq() {
  if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && id rabbitmq >/dev/null 2>&1 &&
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    (
      ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
      cd /var/lib/rabbitmq &&
        HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
          /usr/lib/rabbitmq/bin/rabbitmq-server -detached
    )
  else
    rabbitmq-server -detached
  fi
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
    start_rabbitmq || true
  else
    echo "error: RabbitMQ is not listening on $amqp_host:$amqp_port and no local installation was found" >&2
    exit 1
  fi
fi
wait_for RabbitMQ "$amqp_host" "$amqp_port" 90

for ((i = 0; i < 6; i++)); do
  answers_amqp "$amqp_host" "$amqp_port" && { echo "RabbitMQ answers AMQP"; exit 0; }
  sleep 5
done
cat >&2 <<EOF
error: RabbitMQ listens on $amqp_host:$amqp_port but does not answer the AMQP handshake.
The usual cause is a broker out of file descriptors, held by connections of
test processes that were killed: \`rabbitmq-diagnostics status\` shows the
count against the limit. Stop the broker (\`rabbitmqctl stop\`) and run this
script again: it starts the broker with the hard limit of file descriptors.
Then \`scripts/purge-test-queues.sh\` deletes what killed test runs left.
EOF
exit 1
