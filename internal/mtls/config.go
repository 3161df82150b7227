package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrNotNode refuses a peer whose certificate, though signed by the cluster
// CA, is not a node's (on the Raft transport, or a server a client dialed).
var ErrNotNode = errors.New("certificate is not a pgquorum node's (subject O or OU " + OrgNode + ")")

// Bundle is a cluster CA and this process's certificate.
type Bundle struct {
	CAs  *x509.CertPool
	Cert tls.Certificate
	// Identity is what Cert says about its holder.
	Identity Identity
}

// Load reads the CA bundle, the certificate and its key (PEM files). Every
// error names the file.
func Load(caFile, certFile, keyFile string) (*Bundle, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return NewBundle(pool, cert)
}

// NewBundle checks that cert chains to cas and returns the bundle.
func NewBundle(cas *x509.CertPool, cert tls.Certificate) (*Bundle, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("tls: empty certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate %q is not signed by the CA: %w", leaf.Subject.CommonName, err)
	}
	cert.Leaf = leaf
	return &Bundle{CAs: cas, Cert: cert, Identity: IdentityOf(leaf)}, nil
}

// ServerConfig accepts only clients with a certificate of the cluster CA.
// With need set, the client must also carry one of those roles (the Raft
// transport needs RoleNode); with 0, any role is let through to the
// authorization of each call.
func (b *Bundle) ServerConfig(need Role) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.Cert},
		ClientCAs:    b.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	if need != 0 {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return checkPeer(cs, need)
		}
	}
	return c
}

// ClientConfig presents this certificate and accepts only servers with a
// node certificate of the cluster CA whose names match the dialed host.
func (b *Bundle) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.Cert},
		RootCAs:      b.CAs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkPeer(cs, RoleNode)
		},
	}
}

func checkPeer(cs tls.ConnectionState, need Role) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: peer presented no certificate")
	}
	id := IdentityOf(cs.PeerCertificates[0])
	if !id.Roles.Has(need) {
		if need == RoleNode {
			return fmt.Errorf("tls: peer %s: %w", id, ErrNotNode)
		}
		return fmt.Errorf("tls: peer %s lacks role %s", id, need)
	}
	return nil
}
