#!/bin/bash
#
# koha-mariadb.sh -- the MariaDB of a Koha-like instance for the package test
# (tests/debian/install-test.sh), built with Koha's real schema and mandatory
# data by ../shared/koha/load.sh.
#
#   koha-mariadb.sh start DATADIR DBNAME DBUSER DBPASS
#       Starts a throwaway server in DATADIR (which must not exist) holding
#       DBNAME, with DBUSER/DBPASS granted all on it, as koha-create's
#       database would be. Where the machine has no MariaDB of its own, it
#       listens where koha-create's koha-conf.xml expects Koha's database:
#       the default socket /run/mysqld/mysqld.sock (hostname localhost) and
#       port 3306. Otherwise on a socket in DATADIR's parent and a free port
#       of 127.0.0.1 (as koha-create --dbhost 127.0.0.1 would point to).
#       Prints "HOSTNAME PORT" for koha-conf.xml's <hostname> and <port>.
#   koha-mariadb.sh stop DATADIR
#       Stops that server by its recorded pid and removes DATADIR.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
load_sh=$(readlink -f -- "$here/../../../shared/koha/load.sh")
stop_sh=$(dirname -- "$load_sh")/stop.sh
die() {
    echo "koha-mariadb.sh: $*" >&2
    exit 1
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

case "${1:-}" in
start)
    [ $# -eq 5 ] || die "usage: koha-mariadb.sh start DATADIR DBNAME DBUSER DBPASS"
    datadir=$(readlink -m -- "$2")
    [ -x "$load_sh" ] || [ -f "$load_sh" ] || die "$load_sh is missing (the shared Koha fixtures)"
    [ ! -e "$datadir" ] || die "$datadir exists"
    if [ ! -e /run/mysqld/mysqld.sock ] && port_free 3306; then
        socket=/run/mysqld/mysqld.sock
        host=localhost
        port=3306
        if [ ! -d /run/mysqld ]; then
            install -d -m 0755 /run/mysqld
            : >"$datadir.run-mysqld-created"
        fi
    else
        socket=$(dirname -- "$datadir")/$(basename -- "$datadir").sock
        host=127.0.0.1
        port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    KOHA_DB_USER=$4 KOHA_DB_PASS=$5 bash "$load_sh" "$datadir" "$socket" "$3" "$port" >&2 ||
        die "load.sh failed"
    printf '%s %s\n' "$host" "$port"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: koha-mariadb.sh stop DATADIR"
    datadir=$(readlink -m -- "$2")
    if [ -e "$datadir" ]; then
        bash "$stop_sh" "$datadir" --purge >&2
    fi
    if [ -e "$datadir.run-mysqld-created" ]; then
        rmdir /run/mysqld 2>/dev/null || true
        rm -f -- "$datadir.run-mysqld-created"
    fi
    ;;
*)
    die "usage: koha-mariadb.sh start DATADIR DBNAME DBUSER DBPASS | stop DATADIR"
    ;;
esac
