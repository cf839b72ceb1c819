package mtls

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// CommandName is the subcommand that prints the Secrets of deploy/'s plain
// manifests: `azdo-keda-scaler tls-secrets | kubectl apply -f -`.
const CommandName = "tls-secrets"

// Names are where the Secrets go, as the chart names them for a release
// whose full name is Name: the server's in the scaler's namespace, KEDA's
// client certificate in KEDA's (the only namespace a
// ClusterTriggerAuthentication reads).
type Names struct {
	Name, Namespace, KEDANamespace string
}

// ServerSecret, ClientSecret and ClientName are the chart's names.
func (n Names) ServerSecret() string { return n.Name + "-tls" }
func (n Names) ClientSecret() string { return n.Name + "-keda-client" }
func (n Names) ClientName() string   { return n.Name + "-keda" }

// ServiceDNSNames are the names of the scaler's Service, in the forms a
// scalerAddress can take.
func (n Names) ServiceDNSNames() []string {
	return []string{
		n.Name + "." + n.Namespace + ".svc",
		n.Name + "." + n.Namespace,
		n.Name + "." + n.Namespace + ".svc.cluster.local",
		n.Name,
	}
}

// Secrets renders the bundle as two kubernetes.io/tls Secrets, each with
// ca.crt: the server's and KEDA's client certificate.
func Secrets(b Bundle, n Names) ([]byte, error) {
	secret := func(name, namespace string, cert, key []byte) corev1.Secret {
		return corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/name": "azdo-keda-scaler"}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": b.CACert},
		}
	}
	var out []byte
	for i, s := range []corev1.Secret{
		secret(n.ServerSecret(), n.Namespace, b.ServerCert, b.ServerKey),
		secret(n.ClientSecret(), n.KEDANamespace, b.ClientCert, b.ClientKey),
	} {
		y, err := yaml.Marshal(s)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, y...)
	}
	return out, nil
}

// Command runs `azdo-keda-scaler tls-secrets [flags]`: it generates a CA,
// the server and KEDA's client certificates, and prints both Secrets.
func Command(args []string, now time.Time, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("azdo-keda-scaler "+CommandName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var n Names
	var dnsNames, ips []string
	appendTo := func(list *[]string) func(string) error {
		return func(v string) error {
			if v == "" {
				return errors.New("empty value")
			}
			*list = append(*list, v)
			return nil
		}
	}
	fs.StringVar(&n.Name, "name", "azdo-keda-scaler", "the scaler's Service (the chart's full name)")
	fs.StringVar(&n.Namespace, "namespace", "keda-scalers", "the scaler's namespace")
	fs.StringVar(&n.KEDANamespace, "keda-namespace", "keda", "KEDA's namespace (its cluster object namespace)")
	fs.Func("dns-name", "another name in the server certificate (repeatable)", appendTo(&dnsNames))
	fs.Func("ip", "an IP address in the server certificate (repeatable)", appendTo(&ips))
	days := fs.Int("days", 3650, "validity of the certificates, in days; run again to renew")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: azdo-keda-scaler %s [flags] | kubectl apply -f -\n\n"+
			"Prints the Secrets of mutual TLS between KEDA and the scaler: the server's in --namespace,\n"+
			"KEDA's client certificate in --keda-namespace. The CA's key is not kept.\n\n", CommandName)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", CommandName, fs.Arg(0))
	}
	req := Request{ServerName: n.Name, DNSNames: append(n.ServiceDNSNames(), dnsNames...), ClientName: n.ClientName(),
		NotBefore: now.Add(-time.Hour), Validity: time.Duration(*days) * 24 * time.Hour}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("%s: --ip %q is not an IP address", CommandName, s)
		}
		req.IPs = append(req.IPs, ip)
	}
	if n.Name == "" || n.Namespace == "" || n.KEDANamespace == "" {
		return fmt.Errorf("%s: --name, --namespace and --keda-namespace must not be empty", CommandName)
	}
	b, err := Generate(req)
	if err != nil {
		return fmt.Errorf("%s: %w", CommandName, err)
	}
	out, err := Secrets(b, n)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
