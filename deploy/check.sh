#!/usr/bin/env bash
# deploy/check.sh: lints everything under deploy/ that cannot be run on a developer machine or in
# CI (no container engine, no cluster, no systemd as PID 1), with pinned tools:
#
#   hadolint            deploy/Dockerfile (and the build context Dockerfile.dockerignore leaves)
#   kubernetes-validate every manifest, per file and (when kubectl or kustomize is on PATH) rendered
#   kustomization       every resource listed exists, every manifest is listed
#   checkov             Dockerfile and Kubernetes security settings, and no secrets in deploy/ or docs/operations.md
#   secret values       no value for our secret variables (AK/SK, tokens) committed under deploy/
#   promtool            the alert rules: syntax and unit tests (deploy/tests/alerts.test.yaml)
#   systemd-analyze     verify and security exposure of the unit, when systemd-analyze exists
#   ShellCheck          deploy/*.sh
#
# Before the real checks, each tool is shown one known-bad input and must reject it, so a tool
# that silently passes everything (a broken install, a wrong flag) fails this script.
#
# Tools go into .venv-deploy/ (deploy/requirements-lint.txt pins every version); promtool comes
# from Debian's prometheus package, unpacked there with `apt-get download` (nothing is installed
# system-wide, no service is started).
#
# Environment:
#   DEPLOY_CHECK_STRICT=1   a check whose tool is missing fails instead of being skipped (CI sets
#                           it; systemd-analyze and kubectl stay optional because CI's container
#                           has neither)
#   K8S_VERSIONS            Kubernetes versions to validate against (default "1.31.0 1.34.0")
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-deploy
k8s_versions=${K8S_VERSIONS:-1.31.0 1.34.0}
strict=${DEPLOY_CHECK_STRICT:-0}
manifests_dir=deploy/kubernetes
passed=0
failed=0
skipped=()
failures=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { printf '%s\n' "$*"; }
pass() { passed=$((passed + 1)); say "   ok: $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); say "   FAILED: $1"; }
skip() {
  if [ "$strict" = 1 ] && [ "${2:-required}" = required ]; then
    fail "$1 (tool missing and DEPLOY_CHECK_STRICT=1)"
  else
    skipped+=("$1"); say "   skipped: $1"
  fi
}
# Runs a check; its output is shown only when it fails, or always with VERBOSE=1.
check() {
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    [ "${VERBOSE:-0}" = 1 ] && sed 's/^/     /' "$work/out"
    pass "$name"
  else
    sed 's/^/     /' "$work/out"
    fail "$name"
  fi
}
# The opposite: the tool must reject a known-bad input.
must_reject() {
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    sed 's/^/     /' "$work/out"
    fail "canary: $name accepted a known-bad input"
  else
    pass "canary: $name rejects a known-bad input"
  fi
}

# --- tools -------------------------------------------------------------------------------------
say "== deploy: installing pinned linters into $venv"
started=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    rm -rf "$venv"
    say "error: python3 -m venv failed; on Debian install python3-venv (apt-get install python3-venv)"
    exit 1
  }
fi
want=$(sha256sum deploy/requirements-lint.txt | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    -r deploy/requirements-lint.txt
  printf '%s\n' "$want" >"$venv/.requirements.sha256"
fi
say "   linters ready in $(( $(date +%s) - started ))s: hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}')," \
  "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)," \
  "checkov $("$venv/bin/checkov" --version), shellcheck $("$venv/bin/shellcheck" --version | awk '/^version/{print $2}')"

promtool=$(command -v promtool || true)
if [ -z "$promtool" ] && [ -x "$venv/promtool/usr/bin/promtool" ]; then
  promtool=$venv/promtool/usr/bin/promtool
fi
if [ -z "$promtool" ] && command -v apt-get >/dev/null; then
  say "   fetching promtool from Debian's prometheus package (apt-get download, unpacked into $venv/promtool)"
  mkdir -p "$work/deb"
  if ! (cd "$work/deb" && apt-get download prometheus >/dev/null 2>&1); then
    # The package lists may be missing on a fresh machine; refreshing them needs root.
    if [ "$(id -u)" = 0 ]; then
      { apt-get update -q >/dev/null && (cd "$work/deb" && apt-get download prometheus >/dev/null); } || true
    fi
  fi
  if ls "$work"/deb/prometheus_*.deb >/dev/null 2>&1; then
    dpkg-deb -x "$work"/deb/prometheus_*.deb "$venv/promtool"
    promtool=$venv/promtool/usr/bin/promtool
  fi
fi
# checkov runs offline: BC_SKIP_MAPPING stops it fetching guideline mappings from its vendor's
# platform, --skip-download stops it fetching check updates.
export BC_SKIP_MAPPING=TRUE
checkov_flags=(--quiet --compact --skip-download)
kustomize_cmd=()
if command -v kustomize >/dev/null; then kustomize_cmd=(kustomize build);
elif command -v kubectl >/dev/null; then kustomize_cmd=(kubectl kustomize); fi

# --- canaries ----------------------------------------------------------------------------------
say "== deploy: canaries (each tool must reject a known-bad input)"
mkdir -p "$work/canary/k8s"
printf 'FROM debian\nRUN apt-get update && apt-get install curl\n' >"$work/canary/Dockerfile"
must_reject hadolint "$venv/bin/hadolint" "$work/canary/Dockerfile"
printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: 1}\n' >"$work/canary/bad-service.yaml"
must_reject kubernetes-validate "$venv/bin/kubernetes-validate" --strict --quiet "$work/canary/bad-service.yaml"
cat >"$work/canary/k8s/pod.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
    - name: c
      image: busybox:latest
      securityContext: {privileged: true, allowPrivilegeEscalation: true}
EOF
must_reject checkov "$venv/bin/checkov" "${checkov_flags[@]}" --framework kubernetes -d "$work/canary/k8s"
# shellcheck disable=SC2016 # the unexpanded $1 is the point: the canary script must contain it
printf 'x=$1\nrm -rf $x/*\n' >"$work/canary/bad.sh"
must_reject shellcheck "$venv/bin/shellcheck" -s bash "$work/canary/bad.sh"
if [ -n "$promtool" ]; then
  printf 'groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m]) > \n' >"$work/canary/rules.yaml"
  must_reject promtool "$promtool" check rules "$work/canary/rules.yaml"
fi

# --- Dockerfile --------------------------------------------------------------------------------
say "== deploy: Dockerfile (no container engine here: linted, not built)"
check "hadolint deploy/Dockerfile" "$venv/bin/hadolint" deploy/Dockerfile
check "checkov dockerfile" "$venv/bin/checkov" "${checkov_flags[@]}" --framework dockerfile -f deploy/Dockerfile
# The build context as BuildKit would send it (docker-py implements the .dockerignore rules):
# what cargo needs is in it; build output, local venvs, git data and secrets are not.
check "build context from Dockerfile.dockerignore" "$venv/bin/python" - <<'EOF'
import os, sys
from docker.utils.build import exclude_paths
patterns = [line.strip() for line in open("deploy/Dockerfile.dockerignore")
            if line.strip() and not line.lstrip().startswith("#")]
context = exclude_paths(".", patterns, dockerfile="deploy/Dockerfile")
problems = [f"missing from the context: {path}" for path in
            ("Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs") if path not in context]
for path in sorted(context):
    top = path.split("/", 1)[0]
    if top in ("target", ".git", ".venv", ".venv-deploy", "state") or path.endswith((".env", ".pem", ".key")):
        problems.append(f"in the context but must not be: {path}")
size = sum(os.path.getsize(path) for path in context if os.path.isfile(path))
if size > 50 * 1024 * 1024:
    problems.append(f"context is {size} bytes; something large is not ignored")
print(f"{len(context)} paths, {size} bytes")
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF

# --- Kubernetes --------------------------------------------------------------------------------
say "== deploy: Kubernetes manifests against Kubernetes $k8s_versions"
mapfile -t manifests < <(find "$manifests_dir" -name '*.yaml' ! -name kustomization.yaml | sort)
for version in $k8s_versions; do
  # --strict rejects unknown fields. Kinds without a built-in schema (the Prometheus Operator's
  # CRDs) only warn; promtool checks the rules they carry.
  check "kubernetes-validate --strict -k $version (${#manifests[@]} files)" \
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
done
check "kustomization lists exactly the manifests beside it" "$venv/bin/python" - "$manifests_dir" <<'EOF'
import pathlib, sys, yaml
problems = []
for kustomization in sorted(pathlib.Path(sys.argv[1]).rglob("kustomization.yaml")):
    directory = kustomization.parent
    listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
    for resource in listed:
        if not (directory / resource).exists():
            problems.append(f"{kustomization}: resource {resource} does not exist")
    for manifest in sorted(directory.glob("*.yaml")):
        name = manifest.name
        if name == "kustomization.yaml" or name.endswith(".example.yaml"):
            continue
        if name not in listed:
            problems.append(f"{kustomization}: {name} is not listed in resources (or name it *.example.yaml)")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
EOF
render() {
  "${kustomize_cmd[@]}" "$manifests_dir" >"$work/rendered.yaml"
  # The monitoring component, added the way an overlay would add it.
  mkdir -p "$work/overlay"
  cp -r "$manifests_dir" "$work/overlay/base"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [base]\ncomponents: [base/monitoring]\n' \
    >"$work/overlay/kustomization.yaml"
  "${kustomize_cmd[@]}" "$work/overlay" >"$work/rendered-monitoring.yaml"
}
if [ ${#kustomize_cmd[@]} -gt 0 ]; then
  check "${kustomize_cmd[*]} renders the base and the base with monitoring" render
  for version in $k8s_versions; do
    check "kubernetes-validate rendered kustomization -k $version" \
      "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$work/rendered.yaml" "$work/rendered-monitoring.yaml"
  done
else
  skip "rendering with kustomize (neither kustomize nor kubectl on PATH; files validated one by one)" optional
fi
check "checkov kubernetes" "$venv/bin/checkov" "${checkov_flags[@]}" --framework kubernetes -d "$manifests_dir"
# checkov knows generic and AWS-style secrets, not Huawei Cloud's AK/SK nor our variable names:
# a filled-in env file or Secret must not get committed either.
our_secrets() {
  "$venv/bin/python" - "$@" <<'EOF'
import pathlib, re, sys
names = r"(HUAWEICLOUD_SDK_(?:AK|SK|SECURITY_TOKEN)\w*|GIT_TOKEN|WEBHOOK_SECRET|DLI_GITOPS_API_TOKEN)"
assignment = re.compile(names + r"\s*[=:]\s*[\"']?([^\"'\s]*)")
placeholder = re.compile(r"^(|\.\.\.|\$.*|%s.*|<.*>)$")
found = []
for root in sys.argv[1:]:
    paths = [pathlib.Path(root)] if pathlib.Path(root).is_file() else sorted(pathlib.Path(root).rglob("*"))
    for path in paths:
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in assignment.finditer(line):
                if not placeholder.match(match.group(2)):
                    found.append(f"{path}:{number}: {match.group(1)} has a value; commit placeholders only")
print("\n".join(found))
sys.exit(1 if found else 0)
EOF
}
printf 'HUAWEICLOUD_SDK_SK=%s\n' "$(head -c 30 /dev/urandom | base64 | tr -d '/+=')" >"$work/canary/leak.env"
must_reject "secret values check" our_secrets "$work/canary/leak.env"
check "no secret values in deploy/ or docs/operations.md" our_secrets deploy docs/operations.md
check "checkov secrets (deploy/, docs/operations.md)" "$venv/bin/checkov" "${checkov_flags[@]}" --framework secrets -d deploy -f docs/operations.md

# --- alert rules -------------------------------------------------------------------------------
say "== deploy: alert rules"
if [ -n "$promtool" ]; then
  mkdir -p "$work/rules"
  "$venv/bin/python" - "$manifests_dir/monitoring/prometheusrule.yaml" "$work/rules/rules.yaml" <<'EOF'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
EOF
  cp deploy/tests/alerts.test.yaml "$work/rules/"
  check "promtool check rules ($("$promtool" --version 2>&1 | awk 'NR==1{print $3}'))" "$promtool" check rules "$work/rules/rules.yaml"
  check "promtool test rules deploy/tests/alerts.test.yaml" "$promtool" test rules "$work/rules/alerts.test.yaml"
else
  skip "promtool (not on PATH and apt-get could not fetch Debian's prometheus package)"
fi

# --- systemd -----------------------------------------------------------------------------------
say "== deploy: systemd unit"
if command -v systemd-analyze >/dev/null; then
  # A throwaway root: the unit at its installed path, a stand-in executable at ExecStart's path
  # (verify checks it exists) and the host's system units (verify resolves sysinit.target etc).
  root=$work/root
  mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/dli-gitops"
  chmod 0755 "$root/usr/local/bin/dli-gitops"
  for units in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$units" ]; then cp -a "$units" "$root/usr/lib/systemd/"; break; fi
  done
  cp deploy/systemd/dli-gitops.service "$root/etc/systemd/system/"
  # verify exits 0 on unknown keys and bad values (it only prints them): any output is a failure.
  verify_clean() {
    local output
    output=$(systemd-analyze verify --man=no --root="$root" dli-gitops.service 2>&1) || { echo "$output"; return 1; }
    [ -z "$output" ] || { echo "$output"; return 1; }
  }
  check "systemd-analyze verify ($(systemd-analyze --version | awk 'NR==1{print $1, $2}'))" verify_clean
  # Exposure on systemd's 0-10 scale, threshold in tenths: fail above 2.0 ("OK" ends at 3.9).
  check "systemd-analyze security --offline, exposure at most 2.0" \
    systemd-analyze security --offline=yes --root="$root" --threshold=20 --no-pager dli-gitops.service
  check "sysusers entry parses" systemd-sysusers --dry-run --root="$root" "$PWD/deploy/systemd/dli-gitops.sysusers"
else
  skip "systemd-analyze (not installed here; the unit is not verified)" optional
fi

# --- scripts -----------------------------------------------------------------------------------
say "== deploy: scripts"
check "shellcheck deploy/*.sh" "$venv/bin/shellcheck" -s bash deploy/check.sh deploy/smoke-test.sh

say "== deploy checks: $passed passed, $failed failed, ${#skipped[@]} skipped"
for item in "${skipped[@]}"; do say "   skipped: $item"; done
for item in "${failures[@]}"; do say "   FAILED: $item"; done
[ "$failed" -eq 0 ]
