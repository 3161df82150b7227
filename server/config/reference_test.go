package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const referencePath = "../../docs/configuration.md"

// docKeys returns the keys in the tables of the doc, per section ("## ..." heading).
func docKeys(t *testing.T, doc string) map[string][]string {
	t.Helper()
	row := regexp.MustCompile("^\\| `([a-z0-9_.\\[\\]]+)` \\|")
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil {
			out[section] = append(out[section], m[1])
		}
	}
	return out
}

func structKeys(s *schema) []string {
	var out []string
	for _, f := range s.fields {
		out = append(out, f.key)
	}
	return out
}

func TestConfigReference_MatchesStruct(t *testing.T) {
	b, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("read %s: %v", referencePath, err)
	}
	sections := docKeys(t, string(b))
	for _, tc := range []struct {
		section string
		s       *schema
	}{
		{"Node keys", nodeSchema()},
		{"Bouncer agent keys", bouncerSchema()},
	} {
		inDoc, inStruct := sections[tc.section], structKeys(tc.s)
		if len(inDoc) == 0 {
			t.Errorf("%s: no section %q with a key table", referencePath, tc.section)
		}
		for _, k := range inStruct {
			if !slices.Contains(inDoc, k) {
				t.Errorf("%s: key %s is in the struct but not in the doc; run go generate ./server/config", tc.section, k)
			}
		}
		for _, k := range inDoc {
			if !slices.Contains(inStruct, k) {
				t.Errorf("%s: key %s is in the doc but not in the struct; run go generate ./server/config", tc.section, k)
			}
		}
	}
	for _, f := range nodeSchema().fields {
		if f.doc == "" {
			t.Errorf("key %s has no doc tag", f.key)
		}
	}
	for _, f := range bouncerSchema().fields {
		if f.doc == "" {
			t.Errorf("key %s has no doc tag", f.key)
		}
	}
}

func TestConfigReference_UpToDate(t *testing.T) {
	b, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteReference(&want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("%s is out of date: run go generate ./server/config", filepath.Clean(referencePath))
	}
}

func TestConfigReference_DetectsDrift(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReference(&buf); err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(buf.String(), "| `raft.bind_addr` |", "| `raft.bindaddr` |", 1)
	keys := docKeys(t, doc)["Node keys"]
	if slices.Contains(keys, "raft.bind_addr") || !slices.Contains(keys, "raft.bindaddr") {
		t.Fatalf("doc parser does not see the edit: %v", keys)
	}
}
