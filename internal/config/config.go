// Package config reads masqued's configuration file, so that a deployment
// can keep its settings in one reviewed file instead of a long command line,
// without a second set of option names to learn and keep in step.
//
// The file is a flat YAML mapping whose keys are the command line's flag
// names without the dash, and whose values have the flag's type:
//
//	listen: 0.0.0.0:443
//	max-tunnels: 20000
//	drain-timeout: 30s
//	allow-private-targets: false
//
// Decoding is strict: an unknown key, a key given twice, a value of the
// wrong type (a string for a number, a list for anything) or one the flag
// refuses is an error naming the file, the line and the key. A flag given on
// the command line overrides the file.
package config

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load applies the YAML file at path to fs, which must have been parsed:
// each key's value goes to the flag of that name through its Set method,
// except for flags set on the command line, which win. Keys named in skip
// (such as the flag that names the file) are refused in a file.
func Load(fs *flag.FlagSet, path string, skip ...string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the config file: %w", err)
	}
	return Apply(fs, path, b, skip...)
}

// Apply is Load on the file's contents; name is the file's name, for errors.
func Apply(fs *flag.FlagSet, name string, data []byte, skip ...string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if doc.Kind == 0 { // an empty file
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Tag == "!!null" {
			return nil
		}
		return fmt.Errorf("%s:%d: want a mapping of flag names to values", name, root.Line)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s:%d: a key must be a flag name", name, k.Line)
		}
		key := k.Value
		f := fs.Lookup(key)
		if f == nil || slices.Contains(skip, key) {
			return fmt.Errorf("%s:%d: unknown key %q", name, k.Line, key)
		}
		if line, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: %s: given again (first on line %d)", name, k.Line, key, line)
		}
		seen[key] = k.Line
		if err := checkType(f, v); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", name, v.Line, key, err)
		}
		if onCommandLine[key] {
			continue
		}
		if err := f.Value.Set(v.Value); err != nil {
			return fmt.Errorf("%s:%d: %s: invalid value %q: %w", name, v.Line, key, v.Value, err)
		}
	}
	return nil
}

// checkType checks that v is a scalar of the YAML type the flag's Go type
// calls for.
func checkType(f *flag.Flag, v *yaml.Node) error {
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a single value, not a %s", kindName(v.Kind))
	}
	want, what := "!!str", "a string"
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			want, what = "!!bool", "true or false"
		case int, int64, uint, uint64:
			want, what = "!!int", "an integer"
		case float64:
			if v.Tag == "!!int" {
				return nil
			}
			want, what = "!!float", "a number"
		case time.Duration:
			what = `a duration such as "30s"`
		}
	}
	if v.Tag != want {
		return fmt.Errorf("want %s, not %q", what, v.Value)
	}
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
