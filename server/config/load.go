package config

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// keyDelim is viper's key delimiter. It is not "." so that map keys with dots
// (postgres.parameters: {pg_stat_statements.max: ...}) stay one key.
const keyDelim = "::"

// Load reads the node configuration and validates it.
//
// Sources, highest precedence first: flags set on flags (see RegisterFlags;
// flags not set are ignored), PGQUORUM_* variables in environ, the YAML file,
// the defaults of the timing profile, the built-in defaults. The file is
// path, or $PGQUORUM_CONFIG when path is empty; with neither, the
// configuration comes from the environment and flags alone. flags may be
// nil; environ is normally os.Environ().
//
// Unknown keys in the file, unknown PGQUORUM_* variables and values of the
// wrong type are refused, each with its file and line or its variable; all
// problems are reported at once. PGQUORUM_BOUNCER_* variables belong to the
// bouncer agent and are ignored.
func Load(path string, flags *pflag.FlagSet, environ []string) (*Config, error) {
	var c Config
	err := nodeSchema().load(path, flags, environ, &c, func(p string) (any, error) {
		if p == "" {
			p = string(ProfileDefault)
		}
		return Default(Profile(p))
	})
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	params := make(map[string]string, len(c.Postgres.Parameters))
	for name, val := range c.Postgres.Parameters {
		params[strings.ToLower(name)] = val
	}
	c.Postgres.Parameters = params
	return &c, nil
}

// load fills out (a pointer to the schema's struct) from the sources.
// defaults returns the built-in defaults for a profile name ("" when the
// schema has no profile key or none is set).
func (s *schema) load(path string, fs *pflag.FlagSet, environ []string, out any, defaults func(profile string) (any, error)) error {
	var errs []error
	env, envPath, err := s.parseEnv(environ)
	errs = append(errs, err)
	flagVals, err := s.parseFlags(fs)
	errs = append(errs, err)
	if path == "" {
		path = envPath
	}
	var file map[string]any
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		file, err = parseYAML(path, data, s.root)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	profile := ""
	if s.profileKey != "" {
		if p, ok := flagVals[s.profileKey]; ok {
			profile = p.(string)
		} else if p, ok := env[s.profileKey]; ok {
			profile = p.(string)
		} else if p, ok := lookupNested(file, s.profileKey); ok {
			profile, _ = p.(string)
		}
	}
	def, err := defaults(profile)
	if err != nil {
		return err
	}

	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	dv := reflect.ValueOf(def).Elem()
	for _, f := range s.leaves {
		v.SetDefault(viperKey(f.key), dv.FieldByIndex(f.index).Interface())
	}
	if err := v.MergeConfigMap(file); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	// Set puts a value above every other layer, so the environment goes
	// first and flags overwrite it.
	for _, vals := range []map[string]any{env, flagVals} {
		for k, x := range vals {
			v.Set(viperKey(k), x)
		}
	}
	if err := v.UnmarshalExact(out); err != nil {
		return fmt.Errorf("config: %w: %v", ErrSyntax, err)
	}
	return nil
}

func viperKey(key string) string { return strings.ReplaceAll(key, ".", keyDelim) }

func lookupNested(m map[string]any, key string) (any, bool) {
	parts := strings.Split(key, ".")
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// parseEnv returns the values of the schema's variables in environ, keyed by
// configuration key, and the config file variable's value.
func (s *schema) parseEnv(environ []string) (map[string]any, string, error) {
	vals := map[string]any{}
	var path string
	var errs []error
	var names []string
	for name := range s.byEnv {
		names = append(names, strings.TrimPrefix(name, s.envPrefix))
	}
next:
	for _, kv := range environ {
		name, text, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, s.envPrefix) {
			continue
		}
		if name == s.configEnv {
			path = text
			continue
		}
		for _, p := range s.ignoreEnv {
			if strings.HasPrefix(name, p) {
				continue next
			}
		}
		f := s.byEnv[name]
		if f == nil {
			errs = append(errs, &KeyError{
				Where:   "environment",
				Key:     name,
				Problem: "unknown variable" + suggestion(strings.TrimPrefix(name, s.envPrefix), names, s.envPrefix),
				err:     ErrUnknownKey,
			})
			continue
		}
		x, err := s.parseText(f, text, "environment "+name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vals[f.key] = x
	}
	return vals, path, errors.Join(errs...)
}

// parseFlags returns the values of the schema's flags that were set on fs.
func (s *schema) parseFlags(fs *pflag.FlagSet) (map[string]any, error) {
	vals := map[string]any{}
	if fs == nil {
		return vals, nil
	}
	var errs []error
	fs.Visit(func(pf *pflag.Flag) {
		f := s.byKey[pf.Name]
		if f == nil {
			return
		}
		var x any
		var err error
		switch sv, isSlice := pf.Value.(pflag.SliceValue); {
		case f.kind == kindStrings && isSlice:
			x = sv.GetSlice()
		case f.kind == kindStringMap && pf.Value.Type() == "stringToString":
			x, err = fs.GetStringToString(pf.Name)
		default:
			x, err = s.parseText(f, pf.Value.String(), "flag --"+pf.Name)
		}
		if err != nil {
			errs = append(errs, err)
			return
		}
		vals[f.key] = x
	})
	return vals, errors.Join(errs...)
}

// parseText parses the text of an environment variable or flag for key f.
func (s *schema) parseText(f *field, text, where string) (any, error) {
	fail := func(format string, args ...any) error {
		return &KeyError{Where: where, Key: f.key, Problem: fmt.Sprintf(format, args...), err: ErrSyntax}
	}
	switch f.kind {
	case kindStrings, kindStringMap:
		items := []string{}
		if strings.TrimSpace(text) != "" {
			r := csv.NewReader(strings.NewReader(text))
			r.TrimLeadingSpace = true
			rec, err := r.Read()
			if err != nil {
				return nil, fail("cannot split %q at commas: %v", text, err)
			}
			for _, it := range rec {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
		}
		if f.kind == kindStrings {
			return items, nil
		}
		m := map[string]string{}
		for _, it := range items {
			k, val, ok := strings.Cut(it, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fail("%q is not name=value", it)
			}
			m[strings.TrimSpace(k)] = val
		}
		return m, nil
	case kindList:
		x, err := parseYAMLValue(where, []byte(text), f.typ, f.key)
		if err != nil {
			return nil, err
		}
		if x == nil {
			return []any{}, nil
		}
		return x, nil
	}
	x, err := parseScalar(f.kind, text)
	if err != nil {
		return nil, fail("%s", err)
	}
	return x, nil
}
