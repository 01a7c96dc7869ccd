#!/usr/bin/env bash
# Makes the CustomResourceDefinitions the kind stacks use, from each project's own sources at
# a pinned version, into ~/.cache/paytool/crds/out/NAME.yaml (idempotent: nothing is made
# again while stacks/kind/crds and the pins below are unchanged). No registry here serves
# the upstream CRD files as files, and they are not copied into the repository; each is made
# the way its project makes it (docs/kubernetes.md):
#   argo-cd              controller-gen over Argo CD's Go API types (stacks/kind/crds/argo-cd
#                        pins v3.6.2)
#   argo-rollouts        likewise, Argo Rollouts' (v1.10.2)
#   external-secrets     likewise, External Secrets' (its untagged apis module, pinned by
#                        pseudo-version: the newest the module proxy serves)
#   chaos-mesh           likewise, Chaos Mesh's (its api module, by pseudo-version, 2024-09)
#   cloudnative-pg       the CRDs of the release manifest CloudNativePG embeds in its Go
#                        package `releases` (stacks/kind/crds/embedded pins v1.30.1)
#   prometheus-operator  the CRDs the operator embeds in its Go package `example` (v0.94.1)
#   strimzi              Strimzi's own CRD generator over its API classes, from Maven Central
#                        (stacks/kind/crds/strimzi/pom.xml pins 1.2.0; a JDK 21+ runs it)
#
#   --check   exit 0 when every CRD file is made from the current pins, 1 otherwise
#
# Prints the output directory on stdout; progress goes to stderr. The first run downloads Go
# 1.27 (Argo CD's module needs it) and the modules: minutes; later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pinned versions ----------------------------------------------------------------------------
# controller-gen as each project's own build pins it.
CONTROLLER_GEN=v0.18.0
CONTROLLER_GEN_NEWER=v0.19.0
GO_TOOLCHAIN=go1.27.3

base="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/crds"
out="$base/out"
bin="$base/bin"
log() { echo "install-crds: $*" >&2; }

# What the output is made from: the wrapper modules and this script's pins.
stamp=$( { echo "$CONTROLLER_GEN $CONTROLLER_GEN_NEWER $GO_TOOLCHAIN"; find stacks/kind/crds -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
current() { [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]]; }

if [[ ${1:-} == --check ]]; then
  current && exit 0 || exit 1
fi
if current; then
  echo "$out"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "go is missing; install Go 1.26 or newer (it fetches Go 1.27 itself)"
  exit 3
fi

mkdir -p "$base" "$bin"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another run is making them; waiting for it"
  flock 9
  if current; then echo "$out"; exit 0; fi
fi

export GOMODCACHE="$base/gomodcache" GOCACHE="$base/gocache" GOTOOLCHAIN="$GO_TOOLCHAIN" GOWORK=off
export GOFLAGS="-modcacherw -mod=readonly" CGO_ENABLED=0
unset GOOS GOARCH
started=$SECONDS

for version in "$CONTROLLER_GEN" "$CONTROLLER_GEN_NEWER"; do
  if ! [[ -x $bin/controller-gen-$version ]]; then
    log "building controller-gen $version"
    GOBIN="$bin/build" GOFLAGS=-modcacherw nice -n 19 go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$version" >&2
    mv "$bin/build/controller-gen" "$bin/controller-gen-$version"
  fi
done

work=$(mktemp -d "$base/out.XXXXXX")
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# controller-gen VERSION NAME PACKAGE OPTIONS: the CRDs of one project's API package.
controller_gen() {
  local version=$1 name=$2 package=$3 options=$4
  log "$name: controller-gen $version $options over $package"
  (cd "stacks/kind/crds/$name" && nice -n 19 "$bin/controller-gen-$version" "$options" "paths=$package" output:stdout) > "$work/$name.yaml"
  local count
  count=$(grep -c '^kind: CustomResourceDefinition' "$work/$name.yaml" || true)
  if (( count == 0 )); then
    log "$name: no CRD made"
    exit 1
  fi
  log "$name: $count CRDs"
}

controller_gen "$CONTROLLER_GEN" argo-cd github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1 crd:crdVersions=v1
# Without generateEmbeddedObjectMeta a Rollout's pod template labels would be pruned.
controller_gen "$CONTROLLER_GEN_NEWER" argo-rollouts github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1 crd:crdVersions=v1,generateEmbeddedObjectMeta=true
controller_gen "$CONTROLLER_GEN_NEWER" external-secrets github.com/external-secrets/external-secrets/apis/externalsecrets/v1 crd:crdVersions=v1
controller_gen "$CONTROLLER_GEN" chaos-mesh github.com/chaos-mesh/chaos-mesh/api/v1alpha1 crd:ignoreUnexportedFields=true,crdVersions=v1
log "cloudnative-pg, prometheus-operator: the CRDs their Go packages embed"
(cd stacks/kind/crds/embedded && nice -n 19 go run . "$work") >&2

# Strimzi: its generator, with the arguments its own build passes (one storage version, v1).
java_home=${PAYTOOL_JAVA_HOME:-}
if [[ -z $java_home ]]; then
  for candidate in $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV); do
    version=$("$candidate/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print $2 }')
    if [[ -n $version ]] && (( ${version%%.*} >= 21 )); then java_home=${candidate%/}; break; fi
  done
fi
if [[ -z $java_home ]]; then
  log "strimzi: its CRD generator needs a JDK 21+ under /usr/lib/jvm (or PAYTOOL_JAVA_HOME)"
  exit 3
fi
log "strimzi: its CRD generator (Maven Central) with $java_home"
lib="$base/strimzi-lib"
rm -rf "$lib"
nice -n 19 mvn -q -B -Dstyle.color=never -f stacks/kind/crds/strimzi/pom.xml dependency:copy-dependencies -DoutputDirectory="$lib" >&2
generated="$work/strimzi"
mkdir -p "$generated"
nice -n 19 "$java_home/bin/java" -cp "$lib/*" io.strimzi.crdgenerator.CrdGenerator \
  --crd-api-version v1 --api-versions v1 --storage-version v1 \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --yaml io.strimzi.api.kafka.model.kafka.Kafka="$generated/kafka.yaml" \
  io.strimzi.api.kafka.model.nodepool.KafkaNodePool="$generated/kafkanodepool.yaml" \
  io.strimzi.api.kafka.model.topic.KafkaTopic="$generated/kafkatopic.yaml" >&2
for crd in kafka kafkanodepool kafkatopic; do
  echo "---"
  cat "$generated/$crd.yaml"
done > "$work/strimzi.yaml"
rm -rf "$generated"

echo "$stamp" > "$work/.stamp"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
# The build cache only speeds a rebuild of the same pins.
rm -rf "$GOCACHE"
log "made in $((SECONDS - started)) s: $out"
echo "$out"
