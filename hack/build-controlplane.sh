#!/usr/bin/env bash
# Build kube-apiserver, kubectl and etcd from their published Go modules into
# a cache outside the repository, keyed by version. Each binary is skipped
# when it exists.
#
# Usage: hack/build-controlplane.sh [K8S_VERSION] [ETCD_VERSION]
# Prints the cache directory holding bin/kube-apiserver, bin/kubectl and bin/etcd.
#
# kube-apiserver and kubectl live in k8s.io/kubernetes, whose go.mod replaces its staging
# modules with local paths (=> ./staging/src/k8s.io/...). Those paths do not
# exist in the module zip, so a wrapper module replaces each of them with the
# matching published v0.Y.Z. The list is derived from the module's own go.mod
# so that a new staging module in a later release needs no edit here.
set -euo pipefail

K8S_VERSION="${1:-${REMSTATE_K8S_VERSION:-v1.37.2}}"
ETCD_VERSION="${2:-${REMSTATE_ETCD_VERSION:-v3.6.16}}"
CACHE_ROOT="${REMSTATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remstate}"
OUT="$CACHE_ROOT/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
BIN="$OUT/bin"

log() { printf '[controlplane-build] %s\n' "$*" >&2; }

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" && -x "$BIN/etcd" ]]; then
  log "cached: $BIN"
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed; it is needed to build the control plane"; exit 1; }
mkdir -p "$BIN" "$OUT/src"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
start=$(date +%s)

# --- kube-apiserver and kubectl: one wrapper module around k8s.io/kubernetes ---
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
patch="${K8S_VERSION##*.}"
staging_version="v0.$minor.$patch"
wrap="$OUT/src/kubernetes"

# Writes and resolves the wrapper once; both commands build from it, so they
# share one go.sum and one build cache (kubectl then costs little more than
# its own packages).
prepare_wrapper() {
  [[ -f "$wrap/go.sum" ]] && return 0
  mkdir -p "$wrap"
  # The module's go.mod, fetched through the go command (and so GOPROXY).
  mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$mod" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  {
    echo "module remstate.local/kubernetes"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$mod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$wrap/go.mod"
  cat > "$wrap/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "resolving k8s.io/kubernetes $K8S_VERSION (staging modules at $staging_version)"
  (cd "$wrap" && go mod tidy -e >/dev/null 2>"$OUT/tidy.log" || true)
  (cd "$wrap" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >>"$OUT/tidy.log" 2>&1 || true)
}

# build_command NAME: k8s.io/kubernetes/cmd/NAME into $BIN/NAME, stamped with the version.
build_command() {
  local name="$1" began
  began=$(date +%s)
  prepare_wrapper
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version/verflag.programName=$name"
  log "building $name $K8S_VERSION (minutes on a cold cache)"
  (cd "$wrap" && go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$BIN/$name.tmp" "$BIN/$name"
  log "$name built in $(( $(date +%s) - began ))s"
}

for name in kube-apiserver kubectl; do
  [[ -x "$BIN/$name" ]] || build_command "$name"
done

# --- etcd ------------------------------------------------------------------
if [[ ! -x "$BIN/etcd" ]]; then
  wrap="$OUT/src/etcd"
  mkdir -p "$wrap"
  cat > "$wrap/go.mod" <<GOMOD
module remstate.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat > "$wrap/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  log "building etcd $ETCD_VERSION"
  (cd "$wrap" && go mod tidy >"$OUT/etcd-tidy.log" 2>&1)
  (cd "$wrap" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

log "built in $(( $(date +%s) - start ))s: $BIN"
echo "$OUT"
