package config

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error of this package wraps one of them.
var (
	// ErrInvalid marks a value that breaks a validation rule.
	ErrInvalid = errors.New("invalid configuration")
	// ErrUnknownKey marks a key (in a file, a PGQUORUM_* environment variable
	// or a flag) that the configuration does not have.
	ErrUnknownKey = errors.New("unknown configuration key")
	// ErrSyntax marks a configuration file or value that cannot be parsed.
	ErrSyntax = errors.New("configuration syntax error")
)

// KeyError is one problem with one key. Load and Validate return several of
// them joined with errors.Join; each wraps ErrInvalid, ErrUnknownKey or
// ErrSyntax.
type KeyError struct {
	// Where is the source of the value, e.g. "/etc/pgquorum.yml:12" or
	// "environment PGQUORUM_RAFT_BIND_ADDR"; empty for validation problems.
	Where string
	// Key is the configuration key, e.g. "raft.bind_addr".
	Key string
	// Problem says what is wrong, in words.
	Problem string
	err     error
}

// Error returns "where: key: problem".
func (e *KeyError) Error() string {
	s := e.Problem
	if e.Key != "" {
		s = e.Key + ": " + s
	}
	if e.Where != "" {
		s = e.Where + ": " + s
	}
	return s
}

// Unwrap returns the sentinel error of the problem's class.
func (e *KeyError) Unwrap() error { return e.err }

// problems collects validation problems.
type problems struct{ errs []error }

func (p *problems) addf(key, format string, args ...any) {
	p.errs = append(p.errs, &KeyError{Key: key, Problem: fmt.Sprintf(format, args...), err: ErrInvalid})
}

func (p *problems) err() error { return errors.Join(p.errs...) }
