package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Request says which certificates to make: a server certificate for the
// names KEDA reaches the scaler at, and one client certificate for KEDA.
type Request struct {
	ServerName string   // common name of the server certificate
	DNSNames   []string // names in scalerAddress, e.g. azdo-keda-scaler.keda-scalers.svc
	IPs        []net.IP
	ClientName string // common name of KEDA's certificate (the scaler's --grpc-tls-client-name)
	NotBefore  time.Time
	Validity   time.Duration
}

// Bundle is what Generate makes, as PEM. The CA's key is not part of it:
// it is thrown away, so nobody can sign another certificate the scaler
// would accept.
type Bundle struct {
	CACert                []byte
	ServerCert, ServerKey []byte
	ClientCert, ClientKey []byte
}

// Generate makes a CA and, signed by it, a server certificate (server
// authentication only) and a client certificate (client authentication
// only), with ECDSA P-256 keys.
func Generate(r Request) (Bundle, error) {
	if r.ServerName == "" || r.ClientName == "" {
		return Bundle{}, errors.New("a server name and a client name are needed")
	}
	if len(r.DNSNames) == 0 && len(r.IPs) == 0 {
		return Bundle{}, errors.New("the server certificate needs at least one DNS name or IP")
	}
	if r.Validity <= 0 {
		return Bundle{}, errors.New("validity must be positive")
	}
	notAfter := r.NotBefore.Add(r.Validity)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, err
	}
	caTmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: r.ServerName + "-ca"},
		NotBefore: r.NotBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, ca, err := sign(caTmpl, nil, caKey, &caKey.PublicKey)
	if err != nil {
		return Bundle{}, err
	}
	b := Bundle{CACert: pemBlock("CERTIFICATE", caDER)}
	leaf := func(cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, _, err := sign(&x509.Certificate{
			Subject:   pkix.Name{CommonName: cn},
			NotBefore: r.NotBefore, NotAfter: notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    dns, IPAddresses: ips,
		}, ca, caKey, &key.PublicKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
	}
	if b.ServerCert, b.ServerKey, err = leaf(r.ServerName, x509.ExtKeyUsageServerAuth, r.DNSNames, r.IPs); err != nil {
		return Bundle{}, err
	}
	if b.ClientCert, b.ClientKey, err = leaf(r.ClientName, x509.ExtKeyUsageClientAuth, []string{r.ClientName}, nil); err != nil {
		return Bundle{}, err
	}
	return b, nil
}

// sign signs tmpl with the parent (tmpl itself when nil) and a random
// 128-bit serial number.
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, pub *ecdsa.PublicKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	return der, c, err
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
