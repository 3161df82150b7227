package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// nameRE is the charset of cluster names and node IDs.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func checkName(v *problems, key, s string) {
	switch {
	case s == "":
		v.addf(key, "is required")
	case !nameRE.MatchString(s):
		v.addf(key, "%q is not a valid name: use 1-63 of a-z, 0-9, _ and -, starting with a letter or digit", s)
	}
}

// splitAddr checks that s is host:port with a port in 1-65535.
func splitAddr(s string) (host string, err error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q has no valid port (1-65535)", s)
	}
	if strings.ContainsAny(host, " \t/") {
		return "", fmt.Errorf("%q has no valid host", s)
	}
	return host, nil
}

// unspecified reports whether host means "all interfaces".
func unspecified(host string) bool {
	if host == "" || host == "*" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// checkListen checks a listen address; it reports whether host is unspecified.
func checkListen(v *problems, key, s string, required bool) (isUnspecified bool) {
	if s == "" {
		if required {
			v.addf(key, "is required (host:port)")
		}
		return false
	}
	host, err := splitAddr(s)
	if err != nil {
		v.addf(key, "%s", err)
		return false
	}
	return unspecified(host)
}

// checkAdvertise checks an address others connect to.
func checkAdvertise(v *problems, key, s string) {
	host, err := splitAddr(s)
	if err != nil {
		v.addf(key, "%s", err)
		return
	}
	if unspecified(host) {
		v.addf(key, "%q is an unspecified address: others cannot connect to it; give a host name or an interface address", s)
	}
}

// checkParentExists checks that the parent directory of dir exists and
// that dir, if it exists, is a directory.
func checkParentExists(v *problems, key, dir string) {
	if dir == "" {
		v.addf(key, "is required")
		return
	}
	clean := filepath.Clean(dir)
	parent := filepath.Dir(clean)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		v.addf(key, "parent %q does not exist", parent)
		return
	}
	if st, err := os.Stat(clean); err == nil && !st.IsDir() {
		v.addf(key, "%q exists and is not a directory", dir)
	}
}

// checkFileExists checks that path names an existing regular file.
func checkFileExists(v *problems, key, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		v.addf(key, "%q does not exist or cannot be read: %v", path, unwrapPathError(err))
	case !st.Mode().IsRegular():
		v.addf(key, "%q is not a regular file", path)
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// within reports whether path a equals b or lies inside b.
func within(a, b string) bool {
	a, b = absClean(a), absClean(b)
	if a == b {
		return true
	}
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func absClean(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

func oneOf(v *problems, key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.addf(key, "%q is not one of %s", s, strings.Join(allowed, "|"))
}
