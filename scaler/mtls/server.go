// Package mtls is the scaler's side of mutual TLS with KEDA: the gRPC server's
// TLS configuration, and the certificates a platform engineer without Helm
// (or cert-manager) can generate for it.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Files are the PEM files of the server's TLS. ClientCA and ClientNames
// are optional: with ClientCA every client must present a certificate
// signed by it, and with ClientNames too its common name or one of its DNS
// names must be among them.
type Files struct {
	Cert, Key   string
	ClientCA    string
	ClientNames []string
}

// ServerConfig returns a TLS configuration that reads the files again at
// every handshake, so that a renewed certificate or CA (cert-manager, the
// chart on upgrade, a rotated Secret) applies without a restart. KEDA keeps
// its connections open, so handshakes are rare. The files are read once
// here too, so that a wrong path fails at start-up, not at the first call.
func ServerConfig(f Files) (*tls.Config, error) {
	if len(f.ClientNames) > 0 && f.ClientCA == "" {
		return nil, errors.New("client names need a client CA")
	}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.load()
		},
	}, nil
}

// load builds the configuration of one handshake from the files.
func (f Files) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}
	if f.ClientCA == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(f.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA: no certificate in %s", f.ClientCA)
	}
	cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	if len(f.ClientNames) > 0 {
		names := f.ClientNames
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return ClientNamed(cs.PeerCertificates, names)
		}
	}
	return cfg, nil
}

// ClientNamed checks that the client's certificate (verified already) is
// one of names: by common name or DNS name. A CA that signs more than
// KEDA's certificate (a cluster-wide cert-manager issuer, or the chart's own
// CA, which signs the server certificate too) then still admits only KEDA.
func ClientNamed(chain []*x509.Certificate, names []string) error {
	if len(chain) == 0 {
		return errors.New("no client certificate")
	}
	leaf := chain[0]
	if slices.Contains(names, leaf.Subject.CommonName) {
		return nil
	}
	for _, n := range leaf.DNSNames {
		if slices.Contains(names, n) {
			return nil
		}
	}
	return fmt.Errorf("client certificate %q is not among the allowed client names %v", leaf.Subject.CommonName, names)
}
