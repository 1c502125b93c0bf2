#!/usr/bin/env bash
# Makes sure the servers the tests run against are here: ZooKeeper (Debian's package; the tests start
# their own server from its jars), nginx (likewise) and MariaDB answering on 127.0.0.1:3306 as root without a password.
# Installs and starts only what is missing, so a second run does nothing; prints only on failure.
set -euo pipefail

MYSQL_PORT=3306
MYSQL_START_SECONDS=30

sudo_=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_=(sudo)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "ensure-services: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

run_quietly() {
    "$@" >>"$log" 2>&1
}

apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        run "${sudo_[@]}" apt-get update -qq
        apt_updated=yes
    fi
    run "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

mysql_answering() {
    (exec 3<>"/dev/tcp/127.0.0.1/$MYSQL_PORT") 2>/dev/null
}

start_mariadb() {
    if [ -x /etc/init.d/mariadb ] && run_quietly "${sudo_[@]}" /etc/init.d/mariadb start; then
        return
    fi
    # No init script, or it failed (containers without an init system): run the daemon directly.
    run "${sudo_[@]}" install -d -o mysql -g mysql /run/mysqld
    run "${sudo_[@]}" start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

# ZooKeeper -----------------------------------------------------------------------------------------
if [ ! -f /usr/share/java/zookeeper.jar ]; then
    apt_install zookeeper
fi

# nginx (the built-in load-balancer adapter drives a real one; its tests start their own) -----------
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx
fi

# MariaDB -------------------------------------------------------------------------------------------
if ! mysql_answering; then
    if [ ! -x /usr/sbin/mariadbd ]; then
        apt_install mariadb-server
    fi
    start_mariadb
    for _ in $(seq $((MYSQL_START_SECONDS * 10))); do
        mysql_answering && break
        sleep 0.1
    done
    if ! mysql_answering; then
        echo "ensure-services: MariaDB did not answer on 127.0.0.1:$MYSQL_PORT within ${MYSQL_START_SECONDS}s" >&2
        cat "$log" >&2
        tail -n 20 /var/log/mysql/error.log >&2 2>/dev/null || true
        exit 1
    fi
fi

# The tests log in as root over TCP with no password. A fresh Debian install lets root in only through
# the Unix socket; open the TCP door too (the server listens on the loopback address only).
client=$(command -v mariadb || command -v mysql || true)
if [ -n "$client" ] && ! "$client" -h 127.0.0.1 -P "$MYSQL_PORT" -u root -e 'SELECT 1' >/dev/null 2>&1; then
    run "${sudo_[@]}" "$client" -u root -e "
        ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
fi
