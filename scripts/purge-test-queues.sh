#!/usr/bin/env bash
# Deletes the queues test runs left behind on the local broker: those on the
# default vhost whose name starts with `test-`. A killed test run leaves its
# queues; many hundreds of quorum queues slow the broker until connections
# time out. Deleting them through the broker's own runtime takes seconds
# where one `rabbitmqctl delete_queue` per queue takes minutes.
#
#   scripts/purge-test-queues.sh     # prints how many it deleted
set -euo pipefail

command -v rabbitmqctl >/dev/null || {
  echo "rabbitmqctl is not installed: run this where the test broker runs" >&2
  exit 1
}

rabbitmqctl eval '
  Qs = [Q || Q <- rabbit_amqqueue:list(<<"/">>),
             binary:match(element(4, amqqueue:get_name(Q)), <<"test-">>) =:= {0, 5}],
  [rabbit_amqqueue:delete(Q, false, false, <<"purge-test-queues">>) || Q <- Qs],
  io_lib:format("deleted ~b test queues", [length(Qs)]).' | tr -d '"'
