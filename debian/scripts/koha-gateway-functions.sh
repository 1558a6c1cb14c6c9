# koha-gateway-functions.sh -- shell functions shared by koha-sip, the older
# koha-enable-sip / koha-start-sip / koha-stop-sip wrappers, the systemd unit's
# preparation helper and the package's maintainer scripts.
#
# The paths and the user rules follow Koha's Debian packaging (debian/scripts/
# koha-sip and koha-functions.sh), so a Koha administrator finds everything
# where Koha's own SIP server keeps it:
#
#   template config   /etc/koha/SIPconfig.xml
#   instance config   /etc/koha/sites/<i>/SIPconfig.xml   (mode 600, instance user)
#   Koha config       /etc/koha/sites/<i>/koha-conf.xml
#   enabled flag      /var/lib/koha/<i>/sip.enabled
#   pid file          /var/run/koha/<i>/<i>-koha-sip.pid
#   logs              /var/log/koha/<i>/sip.log, sip-error.log, sip-output.log
#
# This file is sourced, never executed. Every name it defines starts with
# "kg_" or "KG_".

KG_PACKAGE="koha-gateway"
KG_SYSTEM_USER="koha-gateway"
KG_SHARE="/usr/share/koha-gateway"
KG_ETC="/etc/koha"
KG_TEMPLATE="$KG_ETC/SIPconfig.xml"
KG_SHIPPED_TEMPLATE="$KG_SHARE/SIPconfig.xml"
KG_KOHA_CONF_TEMPLATE="$KG_SHARE/koha-conf-site.xml.in"
KG_TWISTD="/usr/bin/twistd3"
KG_ADMIN="/usr/bin/koha-gateway-admin"
KG_TAPNAME="koha-gateway"
KG_UNIT_PREFIX="koha-gateway@"
KG_SYSTEMD_DROPIN_NAME="koha-gateway-user.conf"
KG_CLEAN_PATH="/usr/sbin:/usr/bin:/sbin:/bin"

# Seconds to wait for a freshly started server to write its pid file, and
# the start-stop-daemon retry schedule used by --stop (as Koha's koha-sip).
KG_START_TIMEOUT="${KG_START_TIMEOUT:-20}"
KG_STOP_SCHEDULE="TERM/30/KILL/5"

KG_VERBOSE="${KG_VERBOSE:-no}"
KG_QUIET="${KG_QUIET:-no}"

kg_prog() {
    basename -- "$0"
}

kg_say() {
    [ "$KG_QUIET" = "yes" ] || printf '%s\n' "$*"
}

kg_verbose() {
    [ "$KG_VERBOSE" = "yes" ] && printf '%s\n' "$*"
    return 0
}

kg_warn() {
    printf '%s: %s\n' "$(kg_prog)" "$*" >&2
}

kg_die() {
    kg_warn "$*"
    exit 1
}

# kg_require_root: the commands change files under /etc, /var and /run.
kg_require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        kg_die "must be run as root (try: sudo $(kg_prog) $*)"
    fi
}

# kg_valid_instance_name NAME: Koha instance names become part of user
# names (<i>-koha, at most 32 characters), paths and systemd unit names.
kg_valid_instance_name() {
    case "$1" in
        "" | *[!A-Za-z0-9_-]* | [-_]*) return 1 ;;
    esac
    [ "${#1}" -le 27 ]
}

# Per-instance paths.
kg_site_dir() { printf '%s\n' "$KG_ETC/sites/$1"; }
kg_sipconfig() { printf '%s\n' "$KG_ETC/sites/$1/SIPconfig.xml"; }
kg_kohaconf() { printf '%s\n' "$KG_ETC/sites/$1/koha-conf.xml"; }
kg_state_dir() { printf '%s\n' "/var/lib/koha/$1"; }
kg_enabled_flag() { printf '%s\n' "/var/lib/koha/$1/sip.enabled"; }
kg_run_dir() { printf '%s\n' "/var/run/koha/$1"; }
kg_pidfile() { printf '%s\n' "/var/run/koha/$1/$1-koha-sip.pid"; }
kg_log_dir() { printf '%s\n' "/var/log/koha/$1"; }
kg_sip_log() { printf '%s\n' "/var/log/koha/$1/sip.log"; }
kg_error_log() { printf '%s\n' "/var/log/koha/$1/sip-error.log"; }
kg_output_log() { printf '%s\n' "/var/log/koha/$1/sip-output.log"; }
kg_sqlite_db() { printf '%s\n' "/var/lib/koha/$1/koha-gateway.sqlite3"; }
kg_unit() { printf '%s\n' "$KG_UNIT_PREFIX$1.service"; }
kg_dropin_dir() { printf '%s\n' "/etc/systemd/system/$KG_UNIT_PREFIX$1.service.d"; }

# kg_koha_installed: true when Koha itself is installed (its instances are
# created with koha-create, which koha-gateway does not replace).
kg_koha_installed() {
    [ -e /usr/sbin/koha-create ] || [ -e "$KG_ETC/koha-sites.conf" ]
}

# kg_instance_exists NAME: a Koha instance, or one created by koha-sip --enable.
kg_instance_exists() {
    [ -d "$(kg_site_dir "$1")" ]
}

# kg_instance_user NAME: Koha's instance user <i>-koha when it exists, else
# the package's own system user.
kg_instance_user() {
    if getent passwd "$1-koha" >/dev/null 2>&1; then
        printf '%s\n' "$1-koha"
    else
        printf '%s\n' "$KG_SYSTEM_USER"
    fi
}

# kg_instance_group NAME: the primary group of the instance user.
kg_instance_group() {
    id -gn "$(kg_instance_user "$1")"
}

# kg_is_enabled NAME: Koha's rule (koha-functions.sh is_sip_enabled): the
# instance SIPconfig.xml and the sip.enabled flag both exist.
kg_is_enabled() {
    [ -f "$(kg_sipconfig "$1")" ] && [ -e "$(kg_enabled_flag "$1")" ]
}

# kg_use_systemd: systemd is the running init (sd_booted(3)) and the
# template unit is installed. Containers without systemd use
# start-stop-daemon instead, as Koha's scripts do.
kg_use_systemd() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
        [ -e "/lib/systemd/system/${KG_UNIT_PREFIX}.service" ]
}

# kg_has_capability BIT: the capability is in this process's effective set
# (capability numbers of <linux/capability.h>).
kg_has_capability() {
    local eff
    eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status 2>/dev/null)
    [ -n "$eff" ] || return 1
    [ $(((0x$eff >> $1) & 1)) -eq 1 ]
}

# kg_can_bind_privileged: CAP_NET_BIND_SERVICE (10) can be handed to the
# server as an ambient capability.
kg_can_bind_privileged() {
    kg_has_capability 10
}

# kg_can_drop_bounding_set: CAP_SETPCAP (8) allows removing capabilities
# from the server's bounding set.
kg_can_drop_bounding_set() {
    kg_has_capability 8
}

# kg_all_instances: every instance directory under /etc/koha/sites.
kg_all_instances() {
    local dir
    for dir in "$KG_ETC"/sites/*/; do
        [ -d "$dir" ] || continue
        dir=${dir%/}
        printf '%s\n' "${dir##*/}"
    done
}

# kg_prepare_instance NAME: create the run and log directories and the log
# files with the ownership the server needs (Koha's koha-sip "fixes log
# permissions" the same way before every start).
kg_prepare_instance() {
    local name="$1" user group dir file
    user=$(kg_instance_user "$name")
    group=$(kg_instance_group "$name")

    dir=$(kg_run_dir "$name")
    if [ ! -d "$dir" ]; then
        install -d -m 0755 -o "$user" -g "$group" "$dir"
    fi

    dir=$(kg_log_dir "$name")
    if [ ! -d "$dir" ]; then
        if [ "$user" = "$KG_SYSTEM_USER" ]; then
            # Root-owned, so logrotate can rotate without an "su" directive.
            install -d -m 2750 -o root -g "$group" "$dir"
        else
            install -d -m 0755 -o "$user" -g "$group" "$dir"
        fi
    fi
    for file in "$(kg_sip_log "$name")" "$(kg_error_log "$name")" "$(kg_output_log "$name")"; do
        if [ ! -e "$file" ]; then
            install -m 0640 -o "$user" -g "$group" /dev/null "$file"
        else
            chown "$user:$group" "$file"
            chmod 0640 "$file"
        fi
    done
}

# kg_twistd_args NAME: the server's command line after "twistd3".
kg_twistd_args() {
    local name="$1"
    printf '%s\n' \
        --nodaemon \
        "--pidfile=$(kg_pidfile "$name")" \
        "$KG_TAPNAME" \
        --sip-config "$(kg_sipconfig "$name")" \
        --koha-conf "$(kg_kohaconf "$name")" \
        --sip-log "$(kg_sip_log "$name")" \
        --error-log "$(kg_error_log "$name")"
}

# kg_log_size FILE: current size of FILE in bytes (0 when missing).
kg_log_size() {
    stat -c %s -- "$1" 2>/dev/null || echo 0
}

# kg_report_start_failure NAME OFFSET: show what the server wrote to
# sip-output.log after OFFSET. A configuration error is reported by twistd
# as one "twistd3 ...: file:line: message" line after its usage text: show
# only that line then; otherwise the last 10 lines (a traceback).
kg_report_start_failure() {
    local name="$1" offset="$2" output new usage_error
    output=$(kg_output_log "$name")
    new=$(tail -c +"$((offset + 1))" -- "$output" 2>/dev/null)
    kg_warn "the SIP server for $name did not start:"
    usage_error=$(printf '%s\n' "$new" | grep -E '^/usr/bin/twistd3 [^:]*: ' | tail -n 1)
    if [ -n "$usage_error" ]; then
        printf '%s\n' "${usage_error#/usr/bin/twistd3 --nodaemon: }" >&2
    elif [ -n "$new" ]; then
        printf '%s\n' "$new" | tail -n 10 >&2
    fi
    kg_warn "see $output"
}

# --- start-stop-daemon backend (no systemd) -------------------------------

# kg_sysv_status NAME: start-stop-daemon --status codes (0 running,
# 1 dead with a pid file, 3 not running, 4 unknown).
kg_sysv_status() {
    local name="$1" rc=0
    start-stop-daemon --status --pidfile "$(kg_pidfile "$name")" \
        --user "$(kg_instance_user "$name")" || rc=$?
    return "$rc"
}

# kg_server_processes PIDFILE: pids whose command line names this pid file
# (the server between its start and the moment it writes the file).
kg_server_processes() {
    local f
    # The pattern is read from a file descriptor, so that grep's own command
    # line (in the list it scans) does not contain it.
    grep -lsFz -f <(printf -- '--pidfile=%s\n' "$1") /proc/[0-9]*/cmdline 2>/dev/null |
        while read -r f; do
            f=${f#/proc/}
            printf '%s\n' "${f%/cmdline}"
        done
}

kg_sysv_start() {
    local name="$1" user group pidfile output waited pid offset bounding
    local -a args setpriv_args
    user=$(kg_instance_user "$name")
    group=$(kg_instance_group "$name")
    pidfile=$(kg_pidfile "$name")
    output=$(kg_output_log "$name")
    mapfile -t args < <(kg_twistd_args "$name")

    # Drop to the instance user; keep only the right to bind ports below
    # 1024 (CAP_NET_BIND_SERVICE as an ambient capability and the only one
    # left in the bounding set) and forbid gaining privileges, as the
    # systemd unit does (AmbientCapabilities, CapabilityBoundingSet,
    # NoNewPrivileges). Where root lacks these capabilities (restricted
    # containers) the server runs without any.
    setpriv_args=("--reuid=$user" "--regid=$group" --init-groups --no-new-privs)
    bounding="-all"
    if kg_can_bind_privileged; then
        setpriv_args+=(--inh-caps=+net_bind_service --ambient-caps=+net_bind_service)
        bounding="-all,+net_bind_service"
    fi
    if kg_can_drop_bounding_set; then
        setpriv_args+=("--bounding-set=$bounding")
    fi

    offset=$(kg_log_size "$output")

    # A pid file left behind by a crash would make twistd refuse to start.
    if [ -e "$pidfile" ] && ! kg_sysv_status "$name"; then
        rm -f -- "$pidfile"
    fi

    env -i PATH="$KG_CLEAN_PATH" LANG=C.UTF-8 KOHA_CONF="$(kg_kohaconf "$name")" \
        start-stop-daemon --start --quiet --background \
        --pidfile "$pidfile" --user "$user" \
        --output "$output" --umask 027 --chdir / \
        --startas /usr/bin/setpriv -- "${setpriv_args[@]}" -- \
        "$KG_TWISTD" "${args[@]}" || return 1

    # twistd writes the pid file after reading the configuration, just
    # before it opens the listeners; a configuration error ends the process
    # before that, a listener error right after.
    waited=0
    while [ "$waited" -lt $((KG_START_TIMEOUT * 10)) ]; do
        if [ -s "$pidfile" ]; then
            pid=$(cat -- "$pidfile" 2>/dev/null)
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                sleep 1
                kill -0 "$pid" 2>/dev/null && return 0
            fi
            break
        fi
        if [ $((waited % 10)) -eq 5 ] && [ -z "$(kg_server_processes "$pidfile")" ]; then
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    kg_report_start_failure "$name" "$offset"
    for pid in $(kg_server_processes "$pidfile"); do
        kill -TERM "$pid" 2>/dev/null || true
    done
    return 1
}

kg_sysv_stop() {
    local name="$1"
    start-stop-daemon --stop --quiet --pidfile "$(kg_pidfile "$name")" \
        --user "$(kg_instance_user "$name")" \
        --retry="$KG_STOP_SCHEDULE" --remove-pidfile
}

kg_sysv_reload() {
    local name="$1"
    start-stop-daemon --stop --quiet --signal HUP --pidfile "$(kg_pidfile "$name")" \
        --user "$(kg_instance_user "$name")"
}

# --- backend-independent operations ----------------------------------------

kg_is_running() {
    if kg_use_systemd; then
        systemctl is-active --quiet "$(kg_unit "$1")"
    else
        kg_sysv_status "$1"
    fi
}

# kg_systemd_start NAME: start the unit and wait until the server wrote its
# pid file and still runs a second later; with Type=simple, "systemctl start"
# returns before the configuration has been read.
kg_systemd_start() {
    local name="$1" unit pidfile waited=0 state offset
    unit=$(kg_unit "$name")
    pidfile=$(kg_pidfile "$name")
    offset=$(kg_log_size "$(kg_output_log "$name")")
    systemctl start "$unit" || return 1
    while [ "$waited" -lt $((KG_START_TIMEOUT * 10)) ]; do
        if [ -s "$pidfile" ] && systemctl is-active --quiet "$unit"; then
            sleep 1
            systemctl is-active --quiet "$unit" && return 0
            break
        fi
        state=$(systemctl show --property=SubState --value "$unit" 2>/dev/null)
        case "$state" in
            failed | auto-restart | dead) break ;;
        esac
        sleep 0.1
        waited=$((waited + 1))
    done
    kg_report_start_failure "$name" "$offset"
    kg_warn "see also: systemctl status $unit"
    return 1
}

kg_start() {
    kg_prepare_instance "$1"
    if kg_use_systemd; then
        kg_systemd_start "$1"
    else
        kg_sysv_start "$1"
    fi
}

kg_stop() {
    if kg_use_systemd; then
        systemctl stop "$(kg_unit "$1")"
    else
        kg_sysv_stop "$1"
    fi
}

kg_reload() {
    if kg_use_systemd; then
        systemctl reload "$(kg_unit "$1")"
    else
        kg_sysv_reload "$1"
    fi
}

# kg_write_systemd_user NAME: the template unit runs as the package's system
# user; a Koha instance gets a drop-in that runs it as <i>-koha instead.
kg_write_systemd_user() {
    local name="$1" user group dir
    user=$(kg_instance_user "$name")
    group=$(kg_instance_group "$name")
    dir=$(kg_dropin_dir "$name")
    if [ "$user" = "$KG_SYSTEM_USER" ]; then
        rm -f -- "$dir/$KG_SYSTEMD_DROPIN_NAME"
        rmdir --ignore-fail-on-non-empty -- "$dir" 2>/dev/null || true
        return 0
    fi
    install -d -m 0755 "$dir"
    printf '# Written by koha-sip --enable: run as the Koha instance user.\n[Service]\nUser=%s\nGroup=%s\n' \
        "$user" "$group" >"$dir/$KG_SYSTEMD_DROPIN_NAME"
}

# kg_is_standalone NAME: the instance was created by koha-sip --enable on a
# machine without Koha (its koha-conf.xml comes from our template).
kg_is_standalone() {
    grep -qs "SIP-only instance" "$(kg_kohaconf "$1")"
}

# kg_create_standalone_instance NAME: on a machine without Koha, create what
# koha-create would have created for the SIP server: the site directory and a
# koha-conf.xml pointing at a SQLite database in /var/lib/koha/<i>/, owned by
# the package's system user.
kg_create_standalone_instance() {
    local name="$1" user group site conf tmp
    user="$KG_SYSTEM_USER"
    group=$(id -gn "$user")
    site=$(kg_site_dir "$name")
    conf=$(kg_kohaconf "$name")

    install -d -m 0755 "$KG_ETC" "$KG_ETC/sites"
    install -d -m 0755 "$site"
    install -d -m 0750 -o "$user" -g "$group" "$(kg_state_dir "$name")"
    if [ ! -e "$conf" ]; then
        tmp=$(mktemp "$site/.koha-conf.XXXXXX")
        sed -e "s|__KOHASITE__|$name|g" -e "s|__SQLITE_DB__|$(kg_sqlite_db "$name")|g" \
            "$KG_KOHA_CONF_TEMPLATE" >"$tmp"
        chown "root:$group" "$tmp"
        chmod 0640 "$tmp"
        mv -f -- "$tmp" "$conf"
    fi
    kg_prepare_instance "$name"
}

# kg_init_database NAME: create the tables (koha-gateway-admin init) as the
# instance user, so the database file belongs to it; not readable by others,
# it holds password hashes.
kg_init_database() {
    local name="$1" user
    user=$(kg_instance_user "$name")
    kg_verbose "Initialising the database of $name"
    (umask 027 && env -i PATH="$KG_CLEAN_PATH" LANG=C.UTF-8 \
        runuser -u "$user" -- "$KG_ADMIN" --koha-conf "$(kg_kohaconf "$name")" init)
}

# kg_init_command NAME: the init command line, as an administrator types it.
kg_init_command() {
    printf 'runuser -u %s -- koha-gateway-admin --koha-conf %s init\n' \
        "$(kg_instance_user "$1")" "$(kg_kohaconf "$1")"
}

# kg_init_koha_database NAME: koha-gateway-admin init on a Koha instance's
# database (its kgw_ tables), as the instance user; says what it created or
# upgraded, nothing when the tables are current. Its output goes to stderr
# when it fails.
kg_init_koha_database() {
    local name="$1" out
    if out=$(kg_init_database "$name" 2>&1); then
        case "$out" in
            *"up to date"*) ;;
            *) kg_say "$name: $out" ;;
        esac
        return 0
    fi
    printf '%s\n' "$out" >&2
    return 1
}

# kg_enable NAME: Koha's koha-sip --enable.
kg_enable() {
    local name="$1" user group config flag template
    if ! kg_instance_exists "$name"; then
        if kg_koha_installed; then
            kg_warn "unknown Koha instance $name (create it with koha-create first)"
            return 1
        fi
        kg_say "Creating the SIP-only instance $name"
        kg_create_standalone_instance "$name" || return 1
    fi
    # Also completes a SIP-only instance whose creation was interrupted.
    if kg_is_standalone "$name" && [ ! -s "$(kg_sqlite_db "$name")" ]; then
        if ! kg_init_database "$name"; then
            kg_warn "could not initialise the database of $name"
            return 1
        fi
    fi
    # A Koha instance: the gateway's own kgw_ tables in the instance's database
    # (init creates or upgrades those only, never a Koha table), so that
    # --start works next, as with Koha's SIP server. A database that cannot be
    # reached now does not stop --enable: --start then names the step.
    if ! kg_is_standalone "$name"; then
        kg_init_koha_database "$name" ||
            kg_warn "could not create the gateway's kgw_ tables in the database of $name;" \
                "once it is reachable, run: $(kg_init_command "$name")"
    fi
    user=$(kg_instance_user "$name")
    group=$(kg_instance_group "$name")
    config=$(kg_sipconfig "$name")
    flag=$(kg_enabled_flag "$name")

    if [ -f "$config" ]; then
        kg_warn "SIP already enabled for $name"
    else
        template="$KG_TEMPLATE"
        [ -f "$template" ] || template="$KG_SHIPPED_TEMPLATE"
        install -m 0600 -o "$user" -g "$group" "$template" "$config"
        kg_say "Enabling SIP for $name - edit $config to configure"
    fi
    if [ ! -d "$(kg_state_dir "$name")" ]; then
        install -d -m 0750 -o "$user" -g "$group" "$(kg_state_dir "$name")"
    fi
    if [ ! -e "$flag" ]; then
        install -m 0644 -o "$user" -g "$group" /dev/null "$flag"
    fi
    if kg_use_systemd; then
        kg_write_systemd_user "$name"
        systemctl daemon-reload
        systemctl enable --quiet "$(kg_unit "$name")"
    fi
    return 0
}

# kg_disable NAME: remove the enabled flag (Koha's koha-sip --disable); the
# instance SIPconfig.xml is kept.
kg_disable() {
    local name="$1"
    if [ ! -e "$(kg_enabled_flag "$name")" ]; then
        kg_warn "SIP already disabled for $name"
    else
        rm -f -- "$(kg_enabled_flag "$name")"
        kg_say "Disabled SIP for $name"
    fi
    if kg_use_systemd; then
        systemctl disable --quiet "$(kg_unit "$name")" || true
    fi
    if kg_is_running "$name"; then
        kg_warn "the SIP server for $name is still running; stop it with: koha-sip --stop $name"
    fi
    return 0
}
