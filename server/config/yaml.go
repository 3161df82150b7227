package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxYAMLNodes bounds the work of decoding one document, aliases included.
const maxYAMLNodes = 100_000

// yamlDecoder turns a YAML node tree into the nested map that viper merges,
// checking every key against the configuration struct so that unknown keys,
// duplicates and values of the wrong type are reported with their line.
type yamlDecoder struct {
	where  string // file name or "environment NAME"
	errs   []error
	budget int
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML decodes data, a configuration document for struct type t, into
// the nested map viper merges.
func parseYAML(where string, data []byte, t reflect.Type) (map[string]any, error) {
	v, err := parseYAMLValue(where, data, t, "")
	if err != nil || v == nil {
		return map[string]any{}, err
	}
	return v.(map[string]any), nil
}

// parseYAMLValue decodes data, one YAML document holding a value of type t
// for key ("" for the top level). It returns nil when the document is empty.
func parseYAMLValue(where string, data []byte, t reflect.Type, key string) (v any, err error) {
	var doc yaml.Node
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, &KeyError{Where: where, Problem: fmt.Sprintf("cannot parse YAML: %v", r), err: ErrSyntax}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlSyntaxError(where, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlSyntaxError(where, err)
		}
		return nil, &KeyError{Where: fmt.Sprintf("%s:%d", where, extra.Line), Problem: "more than one YAML document", err: ErrSyntax}
	}
	d := &yamlDecoder{where: where, budget: maxYAMLNodes}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	v, ok := d.decode(root, t, key)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	if !ok {
		return nil, nil
	}
	return v, nil
}

func yamlSyntaxError(where string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return &KeyError{Where: where + ":" + m[1], Problem: "YAML syntax error: " + m[2], err: ErrSyntax}
	}
	return &KeyError{Where: where, Problem: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: "), err: ErrSyntax}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *yamlDecoder) fail(n *yaml.Node, key string, sentinel error, format string, args ...any) {
	d.errs = append(d.errs, &KeyError{
		Where:   fmt.Sprintf("%s:%d", d.where, n.Line),
		Key:     key,
		Problem: fmt.Sprintf(format, args...),
		err:     sentinel,
	})
}

// decode converts n to the value viper should hold for a key of type t. It
// reports false when n is null (the key counts as not set) or wrong.
func (d *yamlDecoder) decode(n *yaml.Node, t reflect.Type, key string) (any, bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil && d.budget > 0 {
		d.budget--
		n = n.Alias
	}
	d.budget--
	if d.budget < 0 {
		if d.budget == -1 {
			d.fail(n, key, ErrSyntax, "document too complex (more than %d nodes with aliases expanded)", maxYAMLNodes)
		}
		return nil, false
	}
	if isNull(n) {
		return nil, false
	}
	label := key
	if label == "" {
		label = "the top level"
	}
	if t.Kind() == reflect.Struct && t != durationType {
		if n.Kind != yaml.MappingNode {
			d.fail(n, label, ErrSyntax, "expected a mapping of keys, found %s", describe(n))
			return nil, false
		}
		return d.decodeStruct(n, t, key), true
	}
	switch kindOf(t) {
	case kindStrings:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, label, ErrSyntax, "expected a list, found %s", describe(n))
			return nil, false
		}
		out := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			if s, ok := d.scalar(item, fmt.Sprintf("%s[%d]", key, i)); ok {
				out = append(out, s)
			}
		}
		return out, true
	case kindStringMap:
		if n.Kind != yaml.MappingNode {
			d.fail(n, label, ErrSyntax, "expected a mapping, found %s", describe(n))
			return nil, false
		}
		out := make(map[string]string, len(n.Content)/2)
		lines := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, ok := d.scalar(n.Content[i], key)
			if !ok {
				continue
			}
			if first, dup := lines[k]; dup {
				d.fail(n.Content[i], key+"."+k, ErrSyntax, "duplicate key (first at line %d)", first)
				continue
			}
			lines[k] = n.Content[i].Line
			if v, ok := d.scalar(n.Content[i+1], key+"."+k); ok {
				out[k] = v
			}
		}
		return out, true
	case kindList:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, label, ErrSyntax, "expected a list, found %s", describe(n))
			return nil, false
		}
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, ok := d.decode(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i))
			if !ok {
				v = map[string]any{}
			}
			out = append(out, v)
		}
		return out, true
	}
	s, ok := d.scalar(n, key)
	if !ok {
		return nil, false
	}
	v, err := parseScalar(kindOf(t), s)
	if err != nil {
		d.fail(n, key, ErrSyntax, "%s", err)
		return nil, false
	}
	return v, true
}

func (d *yamlDecoder) decodeStruct(n *yaml.Node, t reflect.Type, key string) map[string]any {
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
		if sf.IsExported() && name != "" && name != "-" {
			fields[name] = sf
			names = append(names, name)
		}
	}
	prefix := key
	if prefix != "" {
		prefix += "."
	}
	out := map[string]any{}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn := n.Content[i]
		k, ok := d.scalar(kn, key)
		if !ok {
			continue
		}
		sf, known := fields[k]
		if !known {
			d.fail(kn, prefix+k, ErrUnknownKey, "unknown key%s", suggestion(k, names, prefix))
			continue
		}
		if first, dup := lines[k]; dup {
			d.fail(kn, prefix+k, ErrSyntax, "duplicate key (first at line %d)", first)
			continue
		}
		lines[k] = kn.Line
		if v, ok := d.decode(n.Content[i+1], sf.Type, prefix+k); ok {
			out[k] = v
		}
	}
	return out
}

// scalar returns the text of a scalar node.
func (d *yamlDecoder) scalar(n *yaml.Node, key string) (string, bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil && d.budget > 0 {
		d.budget--
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, ErrSyntax, "expected a single value, found %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

// parseScalar parses the text of a scalar key of kind k, as written in YAML,
// an environment variable or a flag.
func parseScalar(k kind, s string) (any, error) {
	switch k {
	case kindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		return b, nil
	case kindInt:
		i, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return i, nil
	case kindDuration:
		return parseDuration(s)
	}
	return s, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil {
		return d, nil
	}
	if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
		return 0, fmt.Errorf("%q has no unit (write e.g. 500ms or 2s)", s)
	}
	return 0, fmt.Errorf("%q is not a duration (write e.g. 500ms or 2s)", s)
}

// suggestion returns " (did you mean X?)" when a known name is close to name.
func suggestion(name string, known []string, prefix string) string {
	best, bestDist := "", 3
	squash := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "").Replace(s))
	}
	for _, k := range known {
		if squash(k) == squash(name) {
			return fmt.Sprintf(" (did you mean %s%s?)", prefix, k)
		}
		if dist := levenshtein(k, name); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s%s?)", prefix, best)
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
