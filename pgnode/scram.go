package pgnode

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns the SCRAM-SHA-256 secret PostgreSQL stores for
// password (RFC 5802/7677, PostgreSQL's "SCRAM-SHA-256$iter:salt$stored:server"
// form), so that ALTER ROLE ... PASSWORD sends the server a verifier instead
// of the clear text, which a statement log (log_min_duration_statement,
// log_min_error_statement, auto_explain, pg_stat_statements) could keep.
//
// ok is false when the password is not printable ASCII: PostgreSQL applies
// SASLprep to other passwords, and computing the same normalization here
// would have to track its Unicode tables; the caller sends those in clear
// text, with statement logging off for its session.
func scramVerifier(password string) (verifier string, ok bool, err error) {
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < 0x20 || c > 0x7e {
			return "", false, nil
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", false, fmt.Errorf("scram salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", false, fmt.Errorf("scram key: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(server)), true, nil
}

// passwordLiteral returns the SQL literal to put after PASSWORD for
// password: its SCRAM verifier, or the quoted clear text (see scramVerifier).
func passwordLiteral(password string) (string, error) {
	v, ok, err := scramVerifier(password)
	if err != nil {
		return "", err
	}
	if !ok {
		return quoteLiteral(password), nil
	}
	return quoteLiteral(v), nil
}
