#!/usr/bin/env bash
# Builds the pieces of a real Kubernetes control plane that test/k8s needs —
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# (fake nodes) and helm — from the Go module proxy, pinned by the nested tools
# modules under hack/tools/*/go.{mod,sum}. No Docker, no release downloads.
#
# The binaries go to a cache outside the clone, keyed by the pinned versions
# and a hash of the tools modules, so a warm machine pays seconds:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/wsedge-k8s/<versions>-<hash>/
# The directory is printed on the last line of stdout (callers use $(...)).
# Cold: ~6-15 minutes on 2 cores and ~7 GB of Go caches; peak ~2.7 GB RSS when
# linking kube-apiserver, so never run it beside `go test -race`.
set -euo pipefail
cd "$(dirname "$0")/tools"

KUBE=v1.37.1 ETCD=v3.7.3 HELM=v4.3.2 KWOK=v0.8.0
sum=$(cat */go.mod */go.sum | sha256sum | cut -c1-12)
root=${XDG_CACHE_HOME:-$HOME/.cache}/wsedge-k8s
dir=$root/kube-$KUBE.etcd-$ETCD.helm-$HELM.kwok-$KWOK-$sum
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete() {
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
  [ -s "$dir/kwok-stages.yaml" ]
}
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$root"
# One builder at a time: a second caller waits for the first instead of
# linking kube-apiserver twice on the same cores.
exec 9>"$root/.lock"
flock 9
if complete; then echo "$dir"; exit 0; fi

tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
build() { # module dir, output name, package, extra ldflags
  local mod=$1 out=$2 pkg=$3 ld=${4:-}
  echo "building $out ($pkg)" >&2
  (cd "$mod" && go build -trimpath -ldflags "-s -w $ld" -o "$tmp/$out" "$pkg")
}

kv="-X k8s.io/component-base/version.gitVersion=$KUBE -X k8s.io/component-base/version.gitMajor=1"
kv="$kv -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE" | cut -d. -f2)"
kv="$kv -X k8s.io/client-go/pkg/version.gitVersion=$KUBE -X k8s.io/client-go/pkg/version.gitMajor=1"
kv="$kv -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$KUBE" | cut -d. -f2)"
build etcd etcd go.etcd.io/etcd/server/v3
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kube "$c" "k8s.io/kubernetes/cmd/$c" "$kv"
done
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build helm helm helm.sh/helm/v4/cmd/helm "-X helm.sh/helm/v4/internal/version.version=$HELM"

# kwok does nothing without Stage definitions. Join the upstream ones with
# an explicit `---` between files: several files do not start with one, and
# a plain cat merges two Stages into one document (pods then never get ready).
stages=$(cd kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
for f in "$stages"/node/fast/*.yaml "$stages"/node/heartbeat-with-lease/*.yaml "$stages"/pod/general/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  echo "---"
  cat "$f"
  echo
done > "$tmp/kwok-stages.yaml"

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
