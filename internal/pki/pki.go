// Package pki is containerflow's small certificate authority: one CA per
// deployment (or testbed) and one certificate per identity — a host's
// agent (named after the host, e.g. hostA), the switch controller
// (controller) and the operator's CLI (cli). The name is the identity the
// servers check on each call (see docs/security.md); it is the
// certificate's common name and its DNS SAN, so a client can also verify a
// server against the host name it meant to reach.
//
// Keys are ECDSA P-256, certificates X.509 made by crypto/x509; the files
// are written 0600 in directories 0700 (the CA key signs every identity).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Well-known identities besides the agents' host names.
const (
	Controller = "controller"
	CLI        = "cli"
)

// Validity of what InitCA and Issue make.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// CACertPath is the CA certificate of a PKI directory.
func CACertPath(dir string) string { return filepath.Join(dir, "ca.pem") }

func caKeyPath(dir string) string { return filepath.Join(dir, "ca-key.pem") }

// CertPath is identity name's certificate in dir.
func CertPath(dir, name string) string { return filepath.Join(dir, name+".pem") }

// KeyPath is identity name's key in dir.
func KeyPath(dir, name string) string { return filepath.Join(dir, name+"-key.pem") }

func checkName(name string) error {
	if !nameRE.MatchString(name) || name == "ca" {
		return fmt.Errorf("pki: identity %q: want letters, digits, . _ - (at most 63, not \"ca\")", name)
	}
	return nil
}

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// InitCA creates a CA in dir (made 0700) unless one is there already: an
// existing CA is kept, since every certificate it issued depends on it.
func InitCA(dir string) error {
	if err := mkdir(dir); err != nil {
		return err
	}
	if _, err := os.Stat(CACertPath(dir)); err == nil {
		_, err := LoadCA(dir)
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "containerflow CA", Organization: []string{"containerflow"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// The key first: a ca.pem without its key would look like a CA.
	if err := write(caKeyPath(dir), keyPEM); err != nil {
		return err
	}
	return write(CACertPath(dir), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// LoadCA reads the CA of dir.
func LoadCA(dir string) (*CA, error) {
	cb, err := os.ReadFile(CACertPath(dir))
	if err != nil {
		return nil, fmt.Errorf("pki: %w (run `cflow certs init --dir %s`)", err, dir)
	}
	kb, err := os.ReadFile(caKeyPath(dir))
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	cert, err := parseCert(cb)
	if err != nil {
		return nil, err
	}
	kblock, _ := pem.Decode(kb)
	if kblock == nil {
		return nil, errors.New("pki: CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: cb}, nil
}

// Issue makes a certificate for identity name, valid for CertValidity,
// with the addresses in hosts (IPs or DNS names) as extra SANs, and writes
// it as NAME.pem and NAME-key.pem in dir. It returns both PEMs.
func Issue(dir, name string, hosts []string) (certPEM, keyPEM []byte, err error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	certPEM, keyPEM, err = ca.Issue(name, hosts, now.Add(-time.Minute), now.Add(CertValidity))
	if err != nil {
		return nil, nil, err
	}
	if err := write(KeyPath(dir, name), keyPEM); err != nil {
		return nil, nil, err
	}
	if err := write(CertPath(dir, name), certPEM); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// Issue makes a certificate for name valid from notBefore to notAfter
// without writing it (tests make expired ones with it).
func (ca *CA) Issue(name string, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"containerflow"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every identity is both: agents call each other, and the
		// controller's certificate may serve as a client's in tools.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Identity is what one process needs for mutual TLS: its certificate and
// key, and the CA that every peer's certificate must chain to.
type Identity struct {
	Name string
	Cert tls.Certificate
	Pool *x509.CertPool
	// CAPEM is what Pool was made from, for programs that read their
	// trust from a file (WriteFiles).
	CAPEM []byte
}

// Files are the paths of an identity written out by WriteFiles.
type Files struct{ CA, Cert, Key string }

// WriteFiles writes the identity as PEM files into dir (0700, the files
// 0600) for a program that takes its TLS credentials as paths: CRIU's
// page server speaks TLS through GnuTLS, not through this process.
func (id *Identity) WriteFiles(dir string) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	key, err := x509.MarshalPKCS8PrivateKey(id.Cert.PrivateKey)
	if err != nil {
		return f, fmt.Errorf("pki: key of %s: %w", id.Name, err)
	}
	var chain []byte
	for _, der := range id.Cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return f, err
	}
	for p, b := range map[string][]byte{f.CA: id.CAPEM, f.Cert: chain, f.Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return f, err
		}
		if err := os.Chmod(p, 0o600); err != nil { // WriteFile keeps an old file's mode
			return f, err
		}
	}
	return f, nil
}

// Load reads identity name of dir.
func Load(dir, name string) (*Identity, error) {
	return LoadFiles(name, CACertPath(dir), CertPath(dir, name), KeyPath(dir, name))
}

// LoadFiles reads an identity from explicit files.
func LoadFiles(name, caFile, certFile, keyFile string) (*Identity, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return FromPEM(name, caPEM, certPEM, keyPEM)
}

// FromPEM builds an identity from PEM blocks.
func FromPEM(name string, caPEM, certPEM, keyPEM []byte) (*Identity, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: no CA certificate")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: identity %s: %w", name, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if name == "" {
		name = cert.Leaf.Subject.CommonName
	}
	return &Identity{Name: name, Cert: cert, Pool: pool, CAPEM: caPEM}, nil
}

// ServerConfig is the TLS configuration of a server: TLS 1.3 only, and
// every client must show a certificate of the CA.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.Pool,
		RootCAs:      id.Pool,
		// Full 16 KiB records from the first byte: the image stream is
		// bulk data inside the frozen window, where the small records of
		// TLS's slow start only add per-record work.
		DynamicRecordSizingDisabled: true,
	}
}

// ClientConfig is the TLS configuration of a client calling the server
// whose identity is server: its certificate must name it (a certificate of
// hostB cannot answer for hostA).
func (id *Identity) ClientConfig(server string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.Pool,
		ClientCAs:    id.Pool,
		ServerName:   server,
		// See ServerConfig.
		DynamicRecordSizingDisabled: true,
	}
}

// PeerName is the identity of the other side of a verified connection:
// its certificate's common name; "" when it showed none (cannot happen
// with ServerConfig) or the connection is not TLS.
func PeerName(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("pki: no certificate PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// mkdir makes dir 0700 and tightens it if it existed looser: it holds the
// CA key.
func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// write replaces path atomically with a 0600 file.
func write(path string, b []byte) error {
	if err := mkdir(filepath.Dir(path)); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
