package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
)

// ctlTLS holds ctl's TLS flags. Their variables start with PGQUORUMCTL_:
// the node refuses unknown PGQUORUM_* variables, and an operator's shell
// may run both.
type ctlTLS struct {
	caFile, certFile, keyFile string
	insecure                  bool
}

// ctlTLSEnv maps each TLS flag to its environment variable.
var ctlTLSEnv = map[string]string{
	"cacert":   "PGQUORUMCTL_CACERT",
	"cert":     "PGQUORUMCTL_CERT",
	"key":      "PGQUORUMCTL_KEY",
	"insecure": "PGQUORUMCTL_INSECURE",
}

func (t *ctlTLS) flags(f *pflag.FlagSet) {
	f.StringVar(&t.caFile, "cacert", "", "the cluster CA certificate, PEM (default $"+ctlTLSEnv["cacert"]+")")
	f.StringVar(&t.certFile, "cert", "", "your client certificate, PEM: subject O pgquorum-admin or pgquorum-readonly (default $"+ctlTLSEnv["cert"]+")")
	f.StringVar(&t.keyFile, "key", "", "the key of --cert, PEM (default $"+ctlTLSEnv["key"]+")")
	f.BoolVar(&t.insecure, "insecure", false, "talk plaintext to a cluster running with tls.insecure: true (default $"+ctlTLSEnv["insecure"]+")")
}

// credentials fills unset flags from the environment and returns the
// transport credentials: nil (plaintext) only with --insecure.
func (t *ctlTLS) credentials(f *pflag.FlagSet) (credentials.TransportCredentials, error) {
	for name, dst := range map[string]*string{"cacert": &t.caFile, "cert": &t.certFile, "key": &t.keyFile} {
		if !f.Changed(name) {
			if v, ok := os.LookupEnv(ctlTLSEnv[name]); ok {
				*dst = v
			}
		}
	}
	if !f.Changed("insecure") {
		if v, ok := os.LookupEnv(ctlTLSEnv["insecure"]); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("$%s: %q is not a boolean", ctlTLSEnv["insecure"], v)
			}
			t.insecure = b
		}
	}
	if t.insecure {
		if t.caFile != "" || t.certFile != "" || t.keyFile != "" {
			return nil, fmt.Errorf("--insecure and --cacert/--cert/--key are both set; use one")
		}
		return nil, nil
	}
	if t.caFile == "" || t.certFile == "" || t.keyFile == "" {
		return nil, fmt.Errorf("TLS: --cacert, --cert and --key are required ($%s, $%s, $%s), or --insecure for a cluster running with tls.insecure: true",
			ctlTLSEnv["cacert"], ctlTLSEnv["cert"], ctlTLSEnv["key"])
	}
	b, err := mtls.Load(t.caFile, t.certFile, t.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return rpc.ClientCredentials(b), nil
}
