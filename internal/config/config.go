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
// Decoding is strict: an unknown key (with the nearest flag name as a
// hint), a key given twice, a value of the wrong type (a string for a number,
// a list for anything) or one the flag refuses is an error naming the file,
// the line and the key. A flag given on the command line overrides the file.
//
// Mistakes found later, in checks of the values, name their flag
// (cli.FlagErrorf); Source.Locate adds the file and line where the file set
// it, so that they read like the decoding errors.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/masqued/masqued/internal/cli"
)

// Source says where a configuration file set flags: "FILE:LINE" of each
// value it applied, by flag name. Flags the command line set are not in it.
// The nil Source is that of no file.
type Source map[string]string

// Locate returns err with the position of its flag's value filled in, when
// err is a *cli.ConfigError about a flag that the file set; any other err,
// including one that wraps a *cli.ConfigError, is returned as it is (a
// wrapping error's message is already made).
func (s Source) Locate(err error) error {
	ce, ok := err.(*cli.ConfigError)
	if !ok || ce.Where != "" || s[ce.Flag] == "" {
		return err
	}
	located := *ce
	located.Where = s[ce.Flag]
	return &located
}

// Load applies the YAML file at path to fs, which must have been parsed:
// each key's value goes to the flag of that name through its Set method,
// except for flags set on the command line, which win. Keys named in skip
// (such as the flag that names the file) are refused in a file. It returns
// where the file set each flag; its errors are *cli.ConfigError.
func Load(fs *flag.FlagSet, path string, skip ...string) (Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, cli.Configf("reading the config file: %w", err)
	}
	return Apply(fs, path, b, skip...)
}

// Apply is Load on the file's contents; name is the file's name, for errors.
func Apply(fs *flag.FlagSet, name string, data []byte, skip ...string) (Source, error) {
	at := func(line int) string { return name + ":" + strconv.Itoa(line) }
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &cli.ConfigError{Where: name, Err: err}
	}
	if doc.Kind == 0 { // an empty file
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Tag == "!!null" {
			return nil, nil
		}
		return nil, &cli.ConfigError{Where: at(root.Line), Err: errors.New("want a mapping of flag names to values")}
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	src := Source{}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &cli.ConfigError{Where: at(k.Line), Err: errors.New("a key must be a flag name")}
		}
		key := k.Value
		f := fs.Lookup(key)
		if f == nil || slices.Contains(skip, key) {
			err := fmt.Errorf("unknown key %q", key)
			if near := cli.Closest(fs, key, skip...); near != "" {
				err = fmt.Errorf("unknown key %q (did you mean %q?)", key, near)
			}
			return nil, &cli.ConfigError{Where: at(k.Line), Err: err}
		}
		if line, dup := seen[key]; dup {
			return nil, &cli.ConfigError{Where: at(k.Line), Flag: key, Err: fmt.Errorf("given again (first on line %d)", line)}
		}
		seen[key] = k.Line
		if err := checkType(f, v); err != nil {
			return nil, &cli.ConfigError{Where: at(v.Line), Flag: key, Err: err}
		}
		if onCommandLine[key] {
			continue
		}
		if err := f.Value.Set(v.Value); err != nil {
			return nil, &cli.ConfigError{Where: at(v.Line), Flag: key, Err: fmt.Errorf("invalid value %q: %w", v.Value, err)}
		}
		src[key] = at(v.Line)
	}
	return src, nil
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
