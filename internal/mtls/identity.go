package mtls

import (
	"crypto/x509"
	"slices"
	"strings"
)

// Role is one thing a certificate allows its holder to do. A certificate
// may carry several (a bit set).
type Role uint8

const (
	// RoleNode is a pgquorum node: Raft, node-to-node RPCs, forwarding.
	RoleNode Role = 1 << iota
	// RoleAdmin is an operator who may change the cluster.
	RoleAdmin
	// RoleReadOnly is an operator or tool that may only read.
	RoleReadOnly
	// RoleBouncer is a `pgquorum bouncer` agent.
	RoleBouncer
)

// The subject O or OU values that grant each role.
const (
	OrgNode     = "pgquorum-node"
	OrgAdmin    = "pgquorum-admin"
	OrgReadOnly = "pgquorum-readonly"
	OrgBouncer  = "pgquorum-bouncer"
)

var roleNames = []struct {
	role Role
	org  string
	name string
}{
	{RoleNode, OrgNode, "node"},
	{RoleAdmin, OrgAdmin, "admin"},
	{RoleReadOnly, OrgReadOnly, "readonly"},
	{RoleBouncer, OrgBouncer, "bouncer"},
}

// Has reports whether r includes any of the roles in want.
func (r Role) Has(want Role) bool { return r&want != 0 }

// String names the roles, joined with "|" ("node|admin"); "none" for none.
func (r Role) String() string {
	var parts []string
	for _, n := range roleNames {
		if r&n.role != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// ParseRoles reads roles as String writes them; unknown names are ignored.
func ParseRoles(s string) Role {
	var r Role
	for _, part := range strings.Split(s, "|") {
		for _, n := range roleNames {
			if part == n.name {
				r |= n.role
			}
		}
	}
	return r
}

// Identity is who a verified peer certificate says its holder is.
type Identity struct {
	// Name is the certificate's subject common name (or its serial number
	// when the CN is empty).
	Name  string
	Roles Role
}

// String is "name (roles)".
func (id Identity) String() string { return id.Name + " (" + id.Roles.String() + ")" }

// IdentityOf returns the identity of a certificate already verified against
// the cluster CA.
func IdentityOf(cert *x509.Certificate) Identity {
	id := Identity{Name: cert.Subject.CommonName}
	if id.Name == "" {
		id.Name = "serial " + cert.SerialNumber.String()
	}
	orgs := slices.Concat(cert.Subject.Organization, cert.Subject.OrganizationalUnit)
	for _, n := range roleNames {
		if slices.Contains(orgs, n.org) {
			id.Roles |= n.role
		}
	}
	return id
}
