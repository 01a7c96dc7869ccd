// Nothing runs: the module exists so that controller-gen can load Argo CD's API types at a
// pinned version (the blank import keeps them in go.mod's build list).
package main

import _ "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"

func main() {}
