package config

import (
	"fmt"
	"os"
	"strings"
)

// redactedPassword replaces passwords in Redacted copies.
const redactedPassword = "***"

// Resolve returns the password: Password, or the content of PasswordFile
// without its trailing newline. With neither set it returns "".
func (c *Credentials) Resolve() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	if c.Password != "" {
		return "", fmt.Errorf("config: password and password_file are both set for user %q: %w", c.Username, ErrInvalid)
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("config: password_file of user %q: %w", c.Username, err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

func (c Credentials) redacted() Credentials {
	if c.Password != "" {
		c.Password = redactedPassword
	}
	return c
}

func (c *Credentials) validate(v *problems, key string, needUser bool) {
	if needUser && c.Username == "" {
		v.addf(key+".username", "is required")
	}
	if c.Password != "" && c.PasswordFile != "" {
		v.addf(key, "password and password_file are both set; use one")
	}
	if c.PasswordFile != "" {
		checkFileExists(v, key+".password_file", c.PasswordFile)
	}
}
