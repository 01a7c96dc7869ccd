// Nothing runs: the module exists so that controller-gen can load the API types at a pinned
// version (the blank import keeps them in go.mod's build list).
package main

import _ "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

func main() {}
