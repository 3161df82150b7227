package config

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
)

// kind is how a leaf key is written in the environment and on the command line.
type kind int

const (
	kindString    kind = iota // any string type
	kindBool                  // true|false
	kindInt                   // decimal integer
	kindDuration              // time.ParseDuration: 500ms, 2s
	kindStrings               // a list; in env and flags comma-separated (CSV quoting)
	kindStringMap             // a map; in env and flags k=v,k2=v2 (CSV quoting)
	kindList                  // a list of objects; in env and flags YAML or JSON text
)

var durationType = reflect.TypeFor[time.Duration]()

// field is one key of a configuration struct.
type field struct {
	key   string // dotted key, e.g. "raft.bind_addr"; items of a list: "clusters[].name"
	index []int
	typ   reflect.Type
	kind  kind
	doc   string
	leaf  bool // settable on its own (env, flag); false for keys inside a list
}

// schema describes a configuration struct: its keys, environment variables
// and flags.
type schema struct {
	name       string       // "node" or "bouncer", for messages
	root       reflect.Type // the configuration struct
	envPrefix  string       // e.g. "PGQUORUM_"
	configEnv  string       // the variable naming the config file
	ignoreEnv  []string     // prefixes of variables that belong to another schema
	fields     []field      // every key in struct order, including keys inside lists
	leaves     []*field     // settable keys
	byKey      map[string]*field
	byEnv      map[string]*field
	profileKey string // key that selects the defaults, if any
}

var (
	nodeSchema = sync.OnceValue(func() *schema {
		return newSchema("node", reflect.TypeFor[Config](), "PGQUORUM_", "PGQUORUM_CONFIG", []string{"PGQUORUM_BOUNCER_"}, "timing.profile")
	})
	bouncerSchema = sync.OnceValue(func() *schema {
		return newSchema("bouncer", reflect.TypeFor[BouncerConfig](), "PGQUORUM_BOUNCER_", "PGQUORUM_BOUNCER_CONFIG", nil, "")
	})
)

func newSchema(name string, root reflect.Type, envPrefix, configEnv string, ignoreEnv []string, profileKey string) *schema {
	s := &schema{
		name: name, root: root, envPrefix: envPrefix, configEnv: configEnv, ignoreEnv: ignoreEnv,
		byKey: map[string]*field{}, byEnv: map[string]*field{}, profileKey: profileKey,
	}
	s.walk(root, "", nil, true)
	for i := range s.fields {
		f := &s.fields[i]
		if !f.leaf {
			continue
		}
		env := s.envName(f.key)
		if other, dup := s.byEnv[env]; dup || env == configEnv {
			panic(fmt.Sprintf("config: keys %q and %q share the variable %s", f.key, other.key, env))
		}
		s.leaves = append(s.leaves, f)
		s.byKey[f.key] = f
		s.byEnv[env] = f
	}
	return s
}

// walk appends the keys of struct type t.
func (s *schema) walk(t reflect.Type, prefix string, index []int, leaf bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		key := prefix + name
		idx := append(append([]int(nil), index...), i)
		ft := sf.Type
		if ft.Kind() == reflect.Struct && ft != durationType {
			s.walk(ft, key+".", idx, leaf)
			continue
		}
		k := kindOf(ft)
		s.fields = append(s.fields, field{key: key, index: idx, typ: ft, kind: k, doc: sf.Tag.Get("doc"), leaf: leaf})
		if k == kindList {
			s.walk(ft.Elem(), key+"[].", nil, false)
		}
	}
}

func kindOf(t reflect.Type) kind {
	switch {
	case t == durationType:
		return kindDuration
	case t.Kind() == reflect.String:
		return kindString
	case t.Kind() == reflect.Bool:
		return kindBool
	case t.Kind() == reflect.Int:
		return kindInt
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return kindStrings
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		return kindStringMap
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return kindList
	}
	panic(fmt.Sprintf("config: unsupported field type %s", t))
}

// envName returns the environment variable of key.
func (s *schema) envName(key string) string {
	return s.envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// typeName returns the type of a key in words, for the reference.
func (k kind) String() string {
	return [...]string{"string", "bool", "int", "duration", "list of strings", "map of strings", "list of objects"}[k]
}

// registerFlags adds one flag per settable key. Flags carry no default value
// of their own: Load uses a flag only when it was set.
func (s *schema) registerFlags(fs *pflag.FlagSet) {
	for _, f := range s.leaves {
		if fs.Lookup(f.key) != nil || isSecretKey(f.key) {
			continue
		}
		usage := firstSentence(f.doc) + " (env " + s.envName(f.key) + ")"
		switch f.kind {
		case kindString:
			fs.String(f.key, "", usage)
		case kindBool:
			fs.Bool(f.key, false, usage)
		case kindInt:
			fs.Int(f.key, 0, usage)
		case kindDuration:
			fs.Duration(f.key, 0, usage)
		case kindStrings:
			fs.StringSlice(f.key, nil, usage)
		case kindStringMap:
			fs.StringToString(f.key, nil, usage)
		case kindList:
			fs.String(f.key, "", usage+"; YAML or JSON")
		}
	}
}

// isSecretKey reports whether key holds a secret in clear (a password).
// Such keys get no flag: every user of the host can read a process's
// command line (ps, /proc/PID/cmdline). The file and the environment set
// them, or the password_file keys.
func isSecretKey(key string) bool {
	return key == "password" || strings.HasSuffix(key, ".password")
}

func firstSentence(doc string) string {
	if i := strings.Index(doc, ". "); i >= 0 {
		return doc[:i]
	}
	return strings.TrimSuffix(doc, ".")
}

// RegisterFlags adds to fs one flag per key of the node configuration, named
// like the key (--raft.bind_addr). Flags that already exist are left alone.
func RegisterFlags(fs *pflag.FlagSet) { nodeSchema().registerFlags(fs) }

// RegisterBouncerFlags adds to fs one flag per key of the bouncer agent
// configuration, named like the key (--pgbouncer.port).
func RegisterBouncerFlags(fs *pflag.FlagSet) { bouncerSchema().registerFlags(fs) }
