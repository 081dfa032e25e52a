// Command render renders a ResourceSet's resourcesTemplate for every input of a flux-inputs
// feed the way Flux Operator builds ResourceSets: Go's text/template with the delimiters
// << >>, sprig's hermetic text functions, an `inputs` function returning the input, a
// `toYaml` function (sigs.k8s.io/yaml) and missingkey=error. Inputs are decoded from the
// feed's JSON as Flux Operator decodes them (numbers become float64).
//
//	go run render.go RESOURCESET.yaml FEED.json > rendered.yaml
//
// It builds offline in GOPATH mode from Debian's golang-github-masterminds-sprig-dev and
// golang-k8s-sigs-yaml-dev (GOPATH=/usr/share/gocode GO111MODULE=off).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type resourceSet struct {
	Spec struct {
		ResourcesTemplate string `json:"resourcesTemplate"`
	} `json:"spec"`
}

type feed struct {
	Inputs []map[string]any `json:"inputs"`
}

func toYaml(v any) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return string(out)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: render RESOURCESET.yaml FEED.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var set resourceSet
	if err := yaml.Unmarshal(raw, &set); err != nil {
		fail(fmt.Errorf("%s: %w", os.Args[1], err))
	}
	body, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	var inputs feed
	if err := json.Unmarshal(body, &inputs); err != nil {
		fail(fmt.Errorf("%s: %w", os.Args[2], err))
	}
	for _, input := range inputs.Inputs {
		input := input
		tp, err := template.New("resourceset").
			Delims("<<", ">>").
			Funcs(sprig.HermeticTxtFuncMap()).
			Funcs(template.FuncMap{"inputs": func() any { return input }}).
			Funcs(template.FuncMap{"toYaml": toYaml}).
			Option("missingkey=error").
			Parse(set.Spec.ResourcesTemplate)
		if err != nil {
			fail(err)
		}
		if err := tp.Execute(os.Stdout, nil); err != nil {
			fail(fmt.Errorf("input %v: %w", input["id"], err))
		}
		fmt.Println()
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "render:", err)
	os.Exit(1)
}
