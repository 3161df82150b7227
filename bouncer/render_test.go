package bouncer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRender_Output(t *testing.T) {
	got, err := Render([]Entry{
		{Name: "shard2", Epoch: 7, Route: Route{Host: "10.0.0.2", Port: 5432, DBName: "app", User: "app_rw",
			Pool: PoolOptions{Mode: "transaction", Size: 20, Reserve: 2}}},
		{Name: "shard1", Epoch: 3, Fenced: true, Route: Route{Host: "10.0.0.1", Port: 5433}},
		{Name: "a.b-c_$1", Epoch: 1, Route: Route{Host: "h1,h2.example.com", Port: 6432, Pool: PoolOptions{MaxDBConnections: 50, MinSize: 1}}},
		{Name: "sock", Epoch: 0, Route: Route{Host: "/var/run/postgresql", Port: 5432}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := header +
		"; exposed epoch=1\na.b-c_$1 = host=h1,h2.example.com port=6432 min_pool_size=1 max_db_connections=50\n" +
		"; fenced epoch=3\nshard1 = host=/dev/null/pgquorum-fenced port=5433\n" +
		"; exposed epoch=7\nshard2 = host=10.0.0.2 port=5432 dbname=app user=app_rw pool_mode=transaction pool_size=20 reserve_pool=2\n" +
		"; exposed epoch=0\nsock = host=/var/run/postgresql port=5432\n"
	if string(got) != want {
		t.Fatalf("Render:\n%s\nwant:\n%s", got, want)
	}
}

func TestRender_Rejects(t *testing.T) {
	ok := Route{Host: "10.0.0.1", Port: 5432}
	with := func(f func(*Route)) Route { r := ok; f(&r); return r }
	tests := []struct {
		name  string
		entry Entry
		field string
		msg   string
	}{
		{"empty name", Entry{Name: "", Route: ok}, "name", "empty"},
		{"name with space", Entry{Name: "a b", Route: ok}, "name", "whitespace"},
		{"name with equals", Entry{Name: "a=host", Route: ok}, "name", "'='"},
		{"name with newline", Entry{Name: "a\nb", Route: ok}, "name", "line break"},
		{"name include directive", Entry{Name: "%include", Route: ok}, "name", "'%'"},
		{"name section", Entry{Name: "[pgbouncer]", Route: ok}, "name", "'['"},
		{"name admin", Entry{Name: "pgbouncer", Route: ok}, "name", "reserved"},
		{"name fallback", Entry{Name: "*", Route: ok}, "name", "'*'"},
		{"name dot start", Entry{Name: ".x", Route: ok}, "name", "start"},
		{"name too long", Entry{Name: strings.Repeat("x", 64), Route: ok}, "name", "longer"},
		{"host empty", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "" })}, "host", "empty"},
		{"host injects key", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "h user=postgres" })}, "host", "whitespace"},
		{"host quote", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "h'" })}, "host", "quote"},
		{"host newline", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "h\nevil = host=x" })}, "host", "line break"},
		{"host equals", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "port=1" })}, "host", "'='"},
		{"host list hole", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "a,,b" })}, "host", "empty element"},
		{"host relative path", Entry{Name: "db", Route: with(func(r *Route) { r.Host = "run/pg" })}, "host", "absolute"},
		{"host fenced sentinel", Entry{Name: "db", Route: with(func(r *Route) { r.Host = FencedHost })}, "host", "reserved"},
		{"port zero", Entry{Name: "db", Route: with(func(r *Route) { r.Port = 0 })}, "port", "1..65535"},
		{"port high", Entry{Name: "db", Route: with(func(r *Route) { r.Port = 70000 })}, "port", "1..65535"},
		{"dbname space", Entry{Name: "db", Route: with(func(r *Route) { r.DBName = "x y" })}, "dbname", "whitespace"},
		{"user quote", Entry{Name: "db", Route: with(func(r *Route) { r.User = `a"b` })}, "user", "quote"},
		{"pool mode", Entry{Name: "db", Route: with(func(r *Route) { r.Pool.Mode = "sessions" })}, "pool_mode", "session, transaction"},
		{"pool size negative", Entry{Name: "db", Route: with(func(r *Route) { r.Pool.Size = -1 })}, "pool_size", "0..100000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render([]Entry{tc.entry})
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidRoute) {
				t.Fatalf("Render(%+v) = %v, want a FieldError", tc.entry, err)
			}
			if fe.Field != tc.field || fe.DB != tc.entry.Name || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q (field %s), want field %s mentioning %q", err, fe.Field, tc.field, tc.msg)
			}
		})
	}
}

func TestRender_DuplicateName(t *testing.T) {
	r := Route{Host: "h", Port: 1}
	_, err := Render([]Entry{{Name: "a", Route: r}, {Name: "a", Route: r}})
	if !errors.Is(err, ErrInvalidRoute) || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestParseInclude_RoundTrip(t *testing.T) {
	in := []Entry{
		{Name: "a", Epoch: 4, Route: Route{Host: "h1,h2", Port: 5432, DBName: "d", User: "u",
			Pool: PoolOptions{Mode: "session", Size: 3, MinSize: 1, Reserve: 2, MaxDBConnections: 9}}},
		{Name: "b", Epoch: 5, Fenced: true, Route: Route{Port: 5433, DBName: "d2"}},
	}
	data, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseInclude(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
}

func TestParseInclude_RefusesForeignFile(t *testing.T) {
	_, err := ParseInclude([]byte("; hand written\nfoo = host=db1 port=5432\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("foreign file: %v", err)
	}
}

func TestWriteFileAtomic_ReplacesAndSetsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "databases.ini")
	for _, content := range []string{"one\n", "two\n"} {
		if err := WriteFileAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

// FuzzRender checks that whatever Render accepts is exactly one database line
// with the given name and only the values given: no input can add a key, a
// line, a section or an include.
func FuzzRender(f *testing.F) {
	f.Add("db", "10.0.0.1", 5432, "app", "u", "transaction", false)
	f.Add("db", "h user=x", 5432, "", "", "", false)
	f.Add("x\ny", "/run/pg", 1, "d", "", "", true)
	f.Fuzz(func(t *testing.T, name, host string, port int, dbname, user, mode string, fenced bool) {
		in := Entry{Name: name, Fenced: fenced, Epoch: 1,
			Route: Route{Host: host, Port: port, DBName: dbname, User: user, Pool: PoolOptions{Mode: mode}}}
		data, err := Render([]Entry{in})
		if err != nil {
			if !errors.Is(err, ErrInvalidRoute) {
				t.Fatalf("error not ErrInvalidRoute: %v", err)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		var dbLines []string
		for _, l := range lines {
			if l == "" || strings.ContainsAny(l[:1], "[%") {
				t.Fatalf("unexpected line %q in\n%s", l, data)
			}
			if l[0] != ';' {
				dbLines = append(dbLines, l)
			}
		}
		if len(dbLines) != 1 || !strings.HasPrefix(dbLines[0], name+" = ") {
			t.Fatalf("want one line for %q, got:\n%s", name, data)
		}
		out, err := ParseInclude(data)
		if err != nil {
			t.Fatalf("ParseInclude of rendered output: %v\n%s", err, data)
		}
		if fenced {
			in.Route.Host = ""
		}
		if len(out) != 1 || !reflect.DeepEqual(out[0], in) {
			t.Fatalf("round trip: got %+v, want %+v", out, in)
		}
	})
}
