//go:build e2e && node

package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// registry is a read-only container registry (the OCI distribution API's
// pull side) for the node tier: a container job's image must be pulled by
// the pod's Docker daemon, as from a team's private registry, and nothing
// may be pulled from the internet. It serves HTTPS on the bridge with its
// own certificate, which the Docker-in-Docker image trusts in
// /etc/docker/certs.d/<host:port>/ca.crt, as a cluster would mount a
// private registry's CA.
//
// Written here rather than taken from a registry library: it serves the
// few blobs the harness makes and records each manifest pull, which the
// scenario checks; pushing, auth and storage are not needed.
type registry struct {
	addr  string // host:port
	caPEM []byte
	srv   *http.Server

	mu        sync.Mutex
	blobs     map[string][]byte // by digest
	manifests map[string][]byte // by "name:tag" and "name@digest"
	pulls     []string          // the repository of each manifest GET
}

var registryPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/([^/]+)$`)

// startRegistry serves on host:0 with a new self-signed certificate for
// host.
func startRegistry(host string) (*registry, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	r := &registry{addr: ln.Addr().String(), caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		blobs: map[string][]byte{}, manifests: map[string][]byte{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}}
	go func() { _ = r.srv.ServeTLS(ln, "", "") }()
	return r, nil
}

func (r *registry) close() { _ = r.srv.Close() }

// push adds an image as name:tag (name without the registry's address),
// its layer gzipped as registries serve them, and returns the reference a
// pull uses.
func (r *registry) push(name, tag string, img *imageSpec) (string, error) {
	layer, err := img.layer()
	if err != nil {
		return "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layer); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	config, err := img.config(sha256Digest(layer))
	if err != nil {
		return "", err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256Digest(config), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256Digest(gz.Bytes()), "size": gz.Len()}},
	})
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range [][]byte{gz.Bytes(), config} {
		r.blobs[sha256Digest(b)] = b
	}
	r.manifests[name+":"+tag] = manifest
	r.manifests[name+"@"+sha256Digest(manifest)] = manifest
	return r.addr + "/" + name + ":" + tag, nil
}

// pulled is the repository of every manifest pulled so far (Docker asks
// for a tag with HEAD, then GETs the digest).
func (r *registry) pulled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.pulls...)
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	m := registryPath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "no such repository")
		return
	}
	name, kind, ref := m[1], m[2], m[3]
	r.mu.Lock()
	var body []byte
	var ok bool
	if kind == "manifests" {
		sep := ":"
		if strings.HasPrefix(ref, "sha256:") {
			sep = "@"
		}
		body, ok = r.manifests[name+sep+ref]
		if ok && req.Method == http.MethodGet {
			r.pulls = append(r.pulls, name)
		}
	} else {
		body, ok = r.blobs[ref]
	}
	r.mu.Unlock()
	if !ok {
		code := "MANIFEST_UNKNOWN"
		if kind == "blobs" {
			code = "BLOB_UNKNOWN"
		}
		registryError(w, http.StatusNotFound, code, fmt.Sprintf("%s %s not found", name, ref))
		return
	}
	if kind == "manifests" {
		w.Header().Set("Content-Type", ociManifest)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Docker-Content-Digest", sha256Digest(body))
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

func registryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]string{"code": code, "message": message}}})
}
