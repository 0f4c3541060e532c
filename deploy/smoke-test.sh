#!/usr/bin/env bash
# deploy/smoke-test.sh: starts the binary exactly as the systemd unit and the container image
# would, then checks /healthz, /readyz, the image's HEALTHCHECK command, the state directory's
# ownership and modes, that no secret reaches the logs, and a clean SIGTERM stop.
# .ci/run runs it on a debug build (DLI_GITOPS_BIN=target/debug/dli-gitops); the launch forms
# and the checks do not depend on the build profile.
#
# Launch forms are read from the files, not restated here, so the test follows them:
#   systemd    ExecStart=, User=, Environment=, EnvironmentFile=, StateDirectory=, UMask=,
#              WorkingDirectory=, NoNewPrivileges= of deploy/systemd/dli-gitops.service
#   container  ENTRYPOINT + CMD, USER, ENV, WORKDIR, HEALTHCHECK of deploy/Dockerfile, with the
#              Secret's keys as environment variables (the Deployment's envFrom)
# As root (and where mount namespaces are allowed), the paths are the files' own: in a private
# mount namespace, overlays on /etc, /var/lib and /usr/local/bin get /etc/dli-gitops,
# /var/lib/dli-gitops and /usr/local/bin/dli-gitops bind-mounted from a temporary directory, so
# argv is exactly the file's and nothing on this machine changes. Otherwise (or with
# SMOKE_EXACT_PATHS=0) those paths move under the temporary directory and argv's binary and
# --config follow them. The config's listen port is always a free loopback port. The daemon runs
# as a non-root uid (10001 for the container, as in the image; 10002 for the unit's `dli-gitops`
# user) with no_new_privs, through setpriv when this script runs as root.
#
# Usage: deploy/smoke-test.sh [systemd|container]...      (default: both)
# Environment:
#   DLI_GITOPS_BIN   the binary (default target/release/dli-gitops; build it with
#                    `cargo build --release --locked`)
#   SMOKE_JOBS       job repository to serve (default examples/jobs)
#   SMOKE_TIMEOUT    seconds to wait for /healthz and for /readyz each (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

binary=${DLI_GITOPS_BIN:-target/release/dli-gitops}
jobs_repo=${SMOKE_JOBS:-examples/jobs}
timeout=${SMOKE_TIMEOUT:-120}
unit=deploy/systemd/dli-gitops.service
dockerfile=deploy/Dockerfile
# The embedded emulator's documented development account; never a real key.
access_key=DLIGITOPSDEVACCESSKEY
secret_key=dli-gitops-dev-secret-key-not-for-production
project_id=0a1b2c3d4e5f60718293a4b5c6d7e8f9

die() { printf 'smoke-test: %s\n' "$*" >&2; exit 1; }

[ -x "$binary" ] || die "no binary at $binary: build it with 'cargo build --release --locked' or set DLI_GITOPS_BIN"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
[ -d "$jobs_repo" ] || die "no job repository at $jobs_repo: set SMOKE_JOBS to one"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"
if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop root"
fi

modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(systemd container)

# Prints one field per line, as the file defines it: argv, env (KEY=VALUE), user, workdir, umask,
# envfile, statedir, healthcheck.
launch_form() {
  python3 - "$1" "$2" <<'EOF'
import json, shlex, sys
mode, path = sys.argv[1], sys.argv[2]
lines = open(path).read().replace("\\\n", " ").splitlines()
out = {"argv": None, "env": [], "user": None, "workdir": None, "umask": None,
       "envfile": None, "statedir": None, "healthcheck": None, "no_new_privs": "no"}
if mode == "systemd":
    section = None
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]":
            continue
        key, _, value = line.partition("=")
        if key == "ExecStart":
            out["argv"] = shlex.split(value.lstrip("-@:+!"))
        elif key == "Environment":
            out["env"] += shlex.split(value)
        elif key == "EnvironmentFile":
            out["envfile"] = value.lstrip("-")
        elif key == "User":
            out["user"] = value
        elif key == "WorkingDirectory":
            out["workdir"] = value.lstrip("-")
        elif key == "UMask":
            out["umask"] = value
        elif key == "StateDirectory":
            out["statedir"] = "/var/lib/" + value.split()[0]
        elif key == "NoNewPrivileges":
            out["no_new_privs"] = value
else:
    entrypoint, cmd = [], []
    for line in lines:
        stripped = line.strip()
        word, _, rest = stripped.partition(" ")
        word = word.upper()
        if word == "FROM":
            # Only the last stage is the image.
            out.update(env=[], user=None, workdir=None, healthcheck=None)
            entrypoint, cmd = [], []
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "ENV":
            out["env"] += shlex.split(rest)
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "WORKDIR":
            out["workdir"] = rest.strip()
        elif word == "HEALTHCHECK":
            command = rest.split(" CMD ", 1)[1].strip()
            # The exec (JSON) form is an argv; the shell form is a command line.
            out["healthcheck"] = shlex.join(json.loads(command)) if command.startswith("[") else command
        elif word == "VOLUME":
            out["statedir"] = json.loads(rest)[0]
    out["argv"] = entrypoint + cmd
    out["no_new_privs"] = "yes"  # allowPrivilegeEscalation: false in the Deployment
for key, value in out.items():
    if key in ("argv", "env"):
        print(f"{key}=" + json.dumps(value))
    else:
        print(f"{key}={'' if value is None else value}")
EOF
}

field() { printf '%s\n' "$form" | sed -n "s/^$1=//p"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_status() { curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 "$1" || true; }

wait_for() {
  local url=$1 deadline=$((SECONDS + timeout)) status
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$log" >&2; die "$mode: the daemon exited before $url answered 200"; }
    status=$(http_status "$url")
    [ "$status" = 200 ] && { echo "   $url -> 200"; return 0; }
    sleep 1
  done
  cat "$log" >&2
  die "$mode: $url did not answer 200 within ${timeout}s (last status: ${status:-none})"
}

run_mode() {
  mode=$1
  case $mode in
    systemd) form=$(launch_form systemd "$unit"); uid=10002; gid=10002 ;;
    container) form=$(launch_form container "$dockerfile")
      uid=$(field user | cut -d: -f1); gid=$(field user | cut -d: -f2); gid=${gid:-$uid} ;;
    *) die "unknown mode $mode (systemd or container)" ;;
  esac
  # Without root there is no one to switch to: the caller is already the non-root user.
  if [ "$(id -u)" != 0 ]; then uid=$(id -u); gid=$(id -g); fi
  root=$(mktemp -d)
  chmod 0755 "$root"
  trap 'stop_daemon; rm -rf "$root"' EXIT
  # Paths as the daemon sees them (the files' own), and where they live on this machine: the same
  # in exact mode (a private mount namespace puts them in place), under $root otherwise.
  local config_path state_path workdir_path etc state port
  config_path=$(field argv | python3 -c '
import json, sys
argv = json.load(sys.stdin)
print(argv[argv.index("--config") + 1])')
  state_path=$(field statedir)
  workdir_path=$(field workdir)
  etc=$root$(dirname "$config_path")
  state=$root$state_path
  if [ "$exact" != 1 ]; then
    config_path=$root$config_path; state_path=$state; workdir_path=$root$workdir_path
  fi
  port=$(free_port)
  mkdir -p "$etc" "$root/srv" "$state"
  # The binary as an install puts it: 0755 on a path every user can reach (the checkout may be
  # under a home directory the daemon's uid cannot enter, e.g. /root on a CI machine).
  local installed=$root/usr/local/bin/dli-gitops
  install -D -m 0755 "$binary" "$installed"
  cp -r "$jobs_repo" "$root/srv/jobs"
  chmod -R a+rX "$root/srv"

  cat >"$etc/$(basename "$config_path")" <<EOF
state_dir: $state_path
listen: 127.0.0.1:$port
api_token_env: DLI_GITOPS_API_TOKEN
sources:
  jobs:
    path: $root/srv/jobs
targets:
  - name: smoke
    source: jobs
    environment: dev
    region: cn-north-4
    project_id: $project_id
    endpoints: {dli: embedded, dlf: embedded, obs: embedded}
    credentials: {access_key_env: HUAWEICLOUD_SDK_AK, secret_key_env: HUAWEICLOUD_SDK_SK}
    staging: obs://dli-gitops-staging/smoke/
    backups: obs://dli-gitops-backups/smoke/
    policy: {auto_sync: true, self_heal: true, prune: false, resync_interval: 1m}
EOF
  # As installed: root-owned, readable by the service's group (unit) or by all (ConfigMap, 0444).
  if [ "$mode" = systemd ]; then
    chmod 0640 "$etc/$(basename "$config_path")"
    chgrp "$gid" "$etc/$(basename "$config_path")" 2>/dev/null || chmod 0644 "$etc/$(basename "$config_path")"
  else
    chmod 0444 "$etc/$(basename "$config_path")"
  fi
  # The secrets, as the env file (systemd) or the Secret's keys (container) provide them.
  local webhook_secret api_token
  webhook_secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  api_token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  printf 'HUAWEICLOUD_SDK_AK=%s\nHUAWEICLOUD_SDK_SK=%s\nGIT_TOKEN=\nWEBHOOK_SECRET=%s\nDLI_GITOPS_API_TOKEN=%s\n' \
    "$access_key" "$secret_key" "$webhook_secret" "$api_token" >"$etc/dli-gitops.env"
  chmod 0600 "$etc/dli-gitops.env"
  chown -R "$uid:$gid" "$state" 2>/dev/null || [ "$(id -u)" != 0 ]
  chmod 0700 "$state"

  # argv: the file's. Outside exact mode, the binary and the config path move.
  local -a argv
  mapfile -t argv < <(field argv | python3 -c '
import json, sys
argv = json.load(sys.stdin)
exact, binary, config_path = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
if not exact:
    argv[0] = binary
    argv[argv.index("--config") + 1] = config_path
print("\n".join(argv))' "$exact" "$installed" "$config_path")
  # Environment: nothing inherited. systemd: its default PATH, the unit's Environment=, the env
  # file, HOME and STATE_DIRECTORY. Container: the image's ENV and the Secret's keys.
  local -a environment=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
  mapfile -t -O 1 environment < <(field env | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)))')
  while IFS= read -r line; do
    case $line in ''|'#'*) ;; *) environment+=("$line") ;; esac
  done <"$etc/dli-gitops.env"
  environment+=("HOME=$state_path")
  if [ "$mode" = systemd ]; then
    environment+=("STATE_DIRECTORY=$state_path" "USER=dli-gitops" "LOGNAME=dli-gitops")
  else
    # The image's HEALTHCHECK reads this; it must follow the listen port.
    environment+=("DLI_GITOPS_HEALTH_URL=http://127.0.0.1:$port/healthz")
  fi
  local umask_value
  umask_value=$(field umask); umask_value=${umask_value:-0022}

  local -a drop=()
  if [ "$(id -u)" = 0 ]; then
    drop=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
    [ "$(field no_new_privs)" = yes ] && drop+=(--no-new-privs)
  fi

  echo "== smoke ($mode): uid $uid, umask $umask_value, cwd $workdir_path, exact paths: $([ "$exact" = 1 ] && echo yes || echo no)"
  echo "   argv: ${argv[*]}"
  log=$root/daemon.log
  if [ "$exact" = 1 ]; then
    # unshare execs bash in a new mount namespace, which mounts and then execs the daemon, so
    # $! is the daemon itself and receives the SIGTERM below.
    unshare --mount --propagation private bash -c "$namespace_setup" namespace-setup \
      "$root/scratch" "$etc" "$(dirname "$config_path")" "$state" "$state_path" "$installed" "${argv[0]}" \
      "$workdir_path" "$umask_value" "${drop[@]}" env -i "${environment[@]}" "${argv[@]}" >"$log" 2>&1 &
  else
    (
      cd "$workdir_path"
      umask "$umask_value"
      exec "${drop[@]}" env -i "${environment[@]}" "${argv[@]}"
    ) >"$log" 2>&1 &
  fi
  daemon_pid=$!

  wait_for "http://127.0.0.1:$port/healthz"
  wait_for "http://127.0.0.1:$port/readyz"

  if [ "$mode" = container ]; then
    # The HEALTHCHECK command, run in the container's environment and user.
    local healthcheck
    healthcheck=$(field healthcheck)
    if (cd "$state" && "${drop[@]}" env -i "${environment[@]}" sh -c "$healthcheck"); then
      echo "   HEALTHCHECK command -> healthy"
    else
      die "$mode: the image's HEALTHCHECK command reports unhealthy: $healthcheck"
    fi
  fi

  # Everything the daemon wrote belongs to its user; under UMask=0077 nobody else can read it.
  local foreign
  foreign=$(find "$state" ! -user "$uid" -print -quit)
  [ -z "$foreign" ] || die "$mode: $foreign in the state directory is not owned by uid $uid"
  if [ "$umask_value" = 0077 ]; then
    local open_file
    open_file=$(find "$state" -mindepth 1 -perm /077 -print -quit)
    [ -z "$open_file" ] || die "$mode: $open_file is readable by others despite UMask=0077"
  fi
  echo "   state directory: $(find "$state" -mindepth 1 | wc -l) entries, all owned by uid $uid"

  # SIGTERM as systemd and the kubelet send it: the daemon must exit 0 within the grace period.
  kill -TERM "$daemon_pid"
  local waited=0
  while kill -0 "$daemon_pid" 2>/dev/null && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
  kill -0 "$daemon_pid" 2>/dev/null && die "$mode: still running 60s after SIGTERM"
  local status=0
  wait "$daemon_pid" || status=$?
  daemon_pid=
  [ "$status" = 0 ] || { cat "$log" >&2; die "$mode: exited with status $status after SIGTERM (want 0)"; }
  echo "   SIGTERM -> exit 0 after ${waited}s"

  local secret
  for secret in "$secret_key" "$webhook_secret" "$api_token"; do
    grep -qF -- "$secret" "$log" && die "$mode: a secret value appears in the daemon's log"
  done
  echo "   no secret in $(wc -l <"$log") log lines"

  rm -rf "$root"
  trap - EXIT
}

# Puts the files' own paths in place inside a private mount namespace: overlays on the parents
# (/etc, /var/lib, /usr/local/bin) so nothing on this machine changes, then bind mounts of the
# test's config directory, state directory and binary. Arguments: scratch, config dir (host),
# config dir (daemon), state dir (host), state dir (daemon), binary (host), binary (daemon),
# workdir, umask, then the command.
# shellcheck disable=SC2016 # expanded by the inner bash
namespace_setup='
set -eu
scratch=$1 config_host=$2 config_dir=$3 state_host=$4 state_path=$5 binary_host=$6 binary_path=$7
workdir=$8 umask_value=$9
shift 9
mkdir -p "$scratch"
mount -t tmpfs -o mode=0700 smoke-scratch "$scratch"
for parent in $(printf "%s\n" "$(dirname "$config_dir")" "$(dirname "$state_path")" "$(dirname "$binary_path")" | sort -u); do
  layer=$scratch/$(printf %s "$parent" | tr / _)
  mkdir -p "$layer/upper" "$layer/work"
  mount -t overlay overlay -o "lowerdir=$parent,upperdir=$layer/upper,workdir=$layer/work" "$parent"
done
mkdir -p "$config_dir" "$state_path"
mount --bind "$config_host" "$config_dir"
mount --bind "$state_host" "$state_path"
touch "$binary_path"
mount --bind "$binary_host" "$binary_path"
cd "$workdir"
umask "$umask_value"
exec "$@"
'

exact=0
if [ "${SMOKE_EXACT_PATHS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null \
  && unshare --mount --propagation private true 2>/dev/null; then
  exact=1
fi

daemon_pid=
stop_daemon() {
  if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
}

for mode in "${modes[@]}"; do
  run_mode "$mode"
done
echo "== smoke: ${#modes[@]} launch form(s) passed (${modes[*]})"
cd "$repo"
