package config

// TLS is the mutual TLS of a node (gRPC and the Raft transport) or of a
// bouncer agent (its gRPC client). Files are PEM; see docs/security.md and
// scripts/gen-certs.sh.
type TLS struct {
	CAFile   string `mapstructure:"ca_file" doc:"The cluster CA certificate(s): peers and clients must present a certificate it signed. Required unless tls.insecure."`
	CertFile string `mapstructure:"cert_file" doc:"This process's certificate, signed by the cluster CA; its subject O or OU gives its role (pgquorum-node for nodes, pgquorum-bouncer for agents). Required unless tls.insecure."`
	KeyFile  string `mapstructure:"key_file" doc:"The private key of cert_file. Required unless tls.insecure; keep it mode 0600."`
	Insecure bool   `mapstructure:"insecure" doc:"true: no TLS and no authorization; anyone who can reach the ports controls the cluster. Only for loopback demos and tests; must be set explicitly, and excludes the three files."`
}

func (t *TLS) validate(v *problems) {
	files := [][2]string{{"tls.ca_file", t.CAFile}, {"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}}
	if t.Insecure {
		for _, f := range files {
			if f[1] != "" {
				v.addf(f[0], "is set, but tls.insecure is true; use TLS or insecure, not both")
			}
		}
		return
	}
	for _, f := range files {
		if f[1] == "" {
			v.addf(f[0], "is required (or set tls.insecure: true to run without TLS, for loopback demos and tests only)")
			continue
		}
		checkFileExists(v, f[0], f[1])
	}
}
