// A wrapper module that writes out the CRDs two projects embed in Go packages of theirs:
// CloudNativePG's release manifests and the Prometheus operator's CRDs (run by
// scripts/install-crds.sh).
module paytool.local/crds/embedded

go 1.26.6

require (
	github.com/cloudnative-pg/cloudnative-pg v1.30.1
	github.com/prometheus-operator/prometheus-operator v0.94.1
)
