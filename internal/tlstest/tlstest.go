// Package tlstest holds what the tests of mutual TLS between KEDA and the
// scaler share: KEDA's side of the handshake, and the server's verdict.
package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// KEDA is the TLS configuration KEDA builds from a trigger's caCert,
// tlsClientCert and tlsClientKey (its pkg/util.NewTLSConfig), for the host
// of scalerAddress ("": gRPC's, from the address). Without certPEM it
// presents no certificate.
func KEDA(t testing.TB, host string, caPEM, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// Handshake connects client to a loopback server with the server's
// configuration and returns the server's verdict: with TLS 1.3 a client
// learns that its certificate was refused only at its first read, the
// server knows at once.
func Handshake(server, client *tls.Config) error {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		return err
	}
	defer ln.Close()
	verdict := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			verdict <- err
			return
		}
		defer c.Close()
		verdict <- c.(*tls.Conn).Handshake()
	}()
	if conn, err := tls.Dial("tcp", ln.Addr().String(), client); err == nil {
		conn.Close()
	}
	return <-verdict
}
