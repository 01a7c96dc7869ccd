// Writes DIR/cloudnative-pg.yaml (the CustomResourceDefinitions of CloudNativePG's release
// manifest, which also holds its operator's Deployment and RBAC) and
// DIR/prometheus-operator.yaml (every CRD of the operator, as its `example` package prints
// them).
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudnative-pg/cloudnative-pg/releases"
	promcrd "github.com/prometheus-operator/prometheus-operator/example"
)

// The release whose manifest is read; the module's version above must match it.
const cnpgRelease = "cnpg-1.30.1.yaml"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: embedded DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	manifest, err := releases.OperatorManifests.ReadFile(cnpgRelease)
	check(err)
	var crds bytes.Buffer
	count := 0
	for _, document := range strings.Split(string(manifest), "\n---") {
		if strings.Contains(document, "\nkind: CustomResourceDefinition\n") {
			crds.WriteString("---")
			crds.WriteString(strings.TrimPrefix(document, "---"))
			crds.WriteString("\n")
			count++
		}
	}
	if count == 0 {
		fmt.Fprintf(os.Stderr, "%s holds no CRD\n", cnpgRelease)
		os.Exit(1)
	}
	check(os.WriteFile(filepath.Join(dir, "cloudnative-pg.yaml"), crds.Bytes(), 0o644))
	file, err := os.Create(filepath.Join(dir, "prometheus-operator.yaml"))
	check(err)
	check(promcrd.PrintAll(file))
	check(file.Close())
	fmt.Fprintf(os.Stderr, "cloudnative-pg: %d CRDs\n", count)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
