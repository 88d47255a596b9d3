#!/usr/bin/env bash
# Apache Kafka on this machine: the broker our users run, as a plain JVM
# process on loopback (KRaft, one node that is its own controller).
#
#   scripts/kafka.sh install
#       Fetches the broker's jars from Maven Central into $LIVEMAP_KAFKA_HOME
#       (default ~/.cache/livemap/kafka), once; skips when they are there.
#   scripts/kafka.sh run DIR BROKER_PORT CONTROLLER_PORT [KEY=VALUE ...]
#       Runs one node in the foreground with its data in DIR (formatted on
#       first use, kept across restarts), listening on 127.0.0.1:BROKER_PORT.
#       Extra settings override the defaults below (later wins). The JVM's
#       pid is written to DIR/kafka.pid, so a test can kill -9 it. The
#       broker ends with this script (SIGTERM stops it cleanly); with
#       LIVEMAP_KAFKA_TIE_STDIN=1 also when this script's standard input
#       closes, so a test binary that dies never leaves one behind.
#   scripts/kafka.sh start DIR BROKER_PORT CONTROLLER_PORT [KEY=VALUE ...]
#       `run` in the background, logging to DIR/broker.log; returns once the
#       broker has started. `scripts/kafka.sh stop DIR` stops it.
#
# Tests (server/tests/it/kafka.rs), benchmarks (bench/) and
# scripts/run-kafka.sh start their brokers through `run`.
set -euo pipefail

KAFKA_VERSION=4.1.1
SLF4J_VERSION=2.0.17
KAFKA_HOME=${LIVEMAP_KAFKA_HOME:-$HOME/.cache/livemap/kafka}

log() { printf '[kafka] %s\n' "$*" >&2; }

install() {
  if [ "$(cat "$KAFKA_HOME/VERSION" 2>/dev/null)" = "$KAFKA_VERSION" ]; then
    log "Apache Kafka $KAFKA_VERSION present in $KAFKA_HOME"
    return
  fi
  command -v java >/dev/null || { log "java is missing (Java 17 or newer)"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is missing (Apache Maven)"; exit 1; }
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  local pom
  pom=$(mktemp -d)
  # The broker (kafka_2.13 holds the server and the storage tool) and a
  # logging binding; Kafka's own slf4j-api is older than the binding's.
  cat > "$pom/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>livemap</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>$SLF4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$KAFKA_HOME.part"
  mkdir -p "$KAFKA_HOME.part/libs"
  (cd "$pom" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_HOME.part/libs")
  rm -rf "$pom"
  echo "$KAFKA_VERSION" > "$KAFKA_HOME.part/VERSION"
  rm -rf "$KAFKA_HOME"
  mv "$KAFKA_HOME.part" "$KAFKA_HOME"
  log "Apache Kafka $KAFKA_VERSION installed"
}

run() {
  local dir=${1:?usage: kafka.sh run DIR BROKER_PORT CONTROLLER_PORT [KEY=VALUE ...]}
  local port=${2:?broker port} cport=${3:?controller port}
  shift 3
  [ -f "$KAFKA_HOME/VERSION" ] || { log "Apache Kafka is not installed: scripts/kafka.sh install"; exit 1; }
  mkdir -p "$dir"
  local props="$dir/server.properties"
  {
    cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
# A single node on a 2-core machine: few threads, small segments.
num.network.threads=2
num.io.threads=4
log.segment.bytes=268435456
EOF
    for kv in "$@"; do printf '%s\n' "$kv"; done
  } > "$props"
  local cp="$KAFKA_HOME/libs/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$props" > "$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
  fi
  java -Xms256m -Xmx${LIVEMAP_KAFKA_HEAP:-768m} -XX:+UseG1GC \
    -Djava.awt.headless=true -cp "$cp" kafka.Kafka "$props" < /dev/null &
  local jvm=$!
  echo "$jvm" > "$dir/kafka.pid"
  # Whoever started this script owns the broker: when its end of our
  # standard input closes (it exited, or died), the broker goes too.
  # (A background job's standard input is /dev/null unless redirected,
  # hence the copy on fd 3.)
  if [ "${LIVEMAP_KAFKA_TIE_STDIN:-0}" = 1 ]; then
    exec 3<&0
    (cat <&3 > /dev/null; kill -9 "$jvm" 2>/dev/null) &
  fi
  trap 'kill "$jvm" 2>/dev/null; wait "$jvm" 2>/dev/null' TERM INT
  wait "$jvm"
}

start() {
  local dir=${1:?usage: kafka.sh start DIR BROKER_PORT CONTROLLER_PORT [KEY=VALUE ...]}
  mkdir -p "$dir"
  local log="$dir/broker.log" from
  from=1
  [ -f "$log" ] && from=$(($(wc -c < "$log") + 1))
  LIVEMAP_KAFKA_TIE_STDIN=0 "$0" run "$@" >> "$log" 2>&1 < /dev/null &
  echo $! > "$dir/script.pid"
  local waited=0
  until tail -c +"$from" "$log" | grep -q "Kafka Server started"; do
    if ! kill -0 "$(cat "$dir/script.pid")" 2>/dev/null || [ $waited -ge 1200 ]; then
      tail -20 "$log" >&2
      log "the broker did not start (log: $log)"
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "Apache Kafka on 127.0.0.1:$2 (log: $log)"
}

stop() {
  local dir=${1:?usage: kafka.sh stop DIR} pid
  pid=$(cat "$dir/script.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 install | run|start DIR BROKER_PORT CONTROLLER_PORT [KEY=VALUE ...] | stop DIR" >&2; exit 2 ;;
esac
