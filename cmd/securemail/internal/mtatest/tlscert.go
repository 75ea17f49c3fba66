package mtatest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSCert is a self-signed server certificate written to files an MTA can
// read.
type TLSCert struct {
	CertFile string // PEM certificate
	KeyFile  string // PEM PKCS#8 private key, mode 0600
	// Pool trusts exactly this certificate, for Go clients that verify.
	Pool *x509.CertPool
	// ServerName is the DNS name in the certificate.
	ServerName string
}

// ClientConfig returns a tls.Config that verifies the MTA against this
// certificate.
func (c *TLSCert) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
}

// NewTLSCert writes a self-signed ECDSA P-256 certificate for hostname,
// localhost and 127.0.0.1 into dir (cert.pem, key.pem).
func NewTLSCert(t testing.TB, dir, hostname string) *TLSCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("mtatest: generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatalf("mtatest: serial: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		DNSNames:              []string{hostname, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("mtatest: create certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("mtatest: marshal key: %v", err)
	}
	c := &TLSCert{
		CertFile:   filepath.Join(dir, "cert.pem"),
		KeyFile:    filepath.Join(dir, "key.pem"),
		Pool:       x509.NewCertPool(),
		ServerName: hostname,
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(c.CertFile, certPEM, 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	c.Pool.AppendCertsFromPEM(certPEM)
	return c
}
