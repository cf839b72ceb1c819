// Package app wires the scaler together: configuration, Azure DevOps
// clients, pollers, the gRPC service, the HTTP endpoints, the sweeper and
// the demo. cmd/azdo-keda-scaler only calls Run.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/bombsimon/logrusr/v4"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/klog/v2"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/entra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/logging"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/status"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

// Version and Revision are set at build time (-ldflags -X).
var (
	Version  = "dev"
	Revision = "unknown"
)

// Run runs the scaler until ctx ends.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags, err := config.Parse("azdo-keda-scaler", args, getenv, stderr)
	if err != nil {
		return err
	}
	if flags.ShowVersion {
		_, err := fmt.Fprintf(stdout, "azdo-keda-scaler %s (revision %s, %s)\n", Version, Revision, runtime.Version())
		return err
	}
	log, secretSet, err := logging.New(stderr, flags.LogFormat, flags.LogLevel)
	if err != nil {
		return err
	}
	// client-go (leader election) logs through klog: send it to logrus so
	// that --log-format json stays JSON.
	klog.SetLogger(logrusr.New(log))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inst, err := Start(ctx, flags, log, secretSet, stdout)
	if err != nil {
		return err
	}
	<-ctx.Done()
	inst.Stop()
	return nil
}

// Instance is a running scaler.
type Instance struct {
	GRPCAddr string
	HTTPAddr string
	Config   *config.File
	Registry *pools.Registry
	Router   *routing.Router
	Clients  map[string]*azdo.Client
	Demo     *demo.Org

	grpcServer *grpc.Server
	httpServer *http.Server
	parents    *sweeper.Parents
	journal    *sweeper.Journal
	leading    atomic.Bool // holds the sweeper Lease (with --leader-elect)
	secrets    *secrets.Set
	cancel     context.CancelFunc
	done       chan struct{}
	ready      atomic.Bool
}

// Start starts every part and returns once the servers listen.
// Every text the instance emits is redacted with secretSet, the set its
// logger uses too.
func Start(ctx context.Context, flags *config.Flags, log *logrus.Logger, secretSet *secrets.Set, stdout io.Writer) (*Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	inst := &Instance{cancel: cancel, done: make(chan struct{}), parents: sweeper.NewParents(), journal: sweeper.NewJournal(), secrets: secretSet}
	fail := func(err error) (*Instance, error) {
		cancel()
		if inst.Demo != nil {
			inst.Demo.Close()
		}
		return nil, err
	}

	cfg, err := loadConfig(flags, inst)
	if err != nil {
		return fail(err)
	}
	inst.Config = cfg
	if inst.Demo != nil {
		secretSet.Add(inst.Demo.PAT)
		go inst.Demo.Simulate(ctx, time.Second)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, Version, Revision)

	inst.Clients = map[string]*azdo.Client{}
	var sources []pools.Source
	for i := range cfg.Organizations {
		o := &cfg.Organizations[i]
		opts := azdo.Options{Name: o.Name, URL: o.URL, Timeout: flags.AzdoTimeout, QPS: flags.AzdoQPS, Observer: m, Logger: log, Secrets: secretSet}
		if o.Auth == config.AuthPAT {
			opts.PAT = o.PAT()
		} else {
			eo := o.EntraOptions()
			eo.Secrets = secretSet
			tokens, err := entra.New(eo)
			if err != nil {
				return fail(fmt.Errorf("organization %s: %w", o.Name, err))
			}
			opts.Token = tokens
		}
		c, err := azdo.New(opts)
		if err != nil {
			return fail(err)
		}
		inst.Clients[o.Name] = c
		sources = append(sources, c)
	}
	inst.Registry = pools.NewRegistry(ctx, sources, pools.Options{RefreshInterval: flags.RefreshInterval, StaleAfter: flags.StaleAfter,
		IdleAfter: flags.PollerIdle, AttemptTimeout: flags.AzdoTimeout, MinRefresh: flags.MinRefresh, DemandWait: flags.DemandWait,
		Observer: m, Logger: log})
	inst.Router = routing.NewRouter(routing.Options{Warmup: flags.RoutingWarmup, ForgetAfterPolls: flags.TriggerForgetPolls,
		ForgetMin: flags.TriggerForgetMin, ForgetMax: flags.TriggerForgetMax, Observer: m, Logger: log})
	svc := service.New(inst.Registry, cfg, cfg, service.Options{Logger: log, OnParent: inst.parents.Add, Router: inst.Router})

	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	cleanUnary, cleanStream := service.SanitizeErrors(secretSet)
	serverOpts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(grpcMetrics.UnaryServerInterceptor(), cleanUnary),
		grpc.ChainStreamInterceptor(grpcMetrics.StreamServerInterceptor(), cleanStream)}
	if flags.TLSCertFile != "" {
		creds, err := serverTLS(flags)
		if err != nil {
			return fail(err)
		}
		serverOpts = append(serverOpts, grpc.Creds(creds))
	}
	inst.grpcServer = grpc.NewServer(serverOpts...)
	pb.RegisterExternalScalerServer(inst.grpcServer, svc)
	healthServer := health.NewServer()
	healthpb.RegisterHealthServer(inst.grpcServer, healthServer)
	grpcMetrics.InitializeMetrics(inst.grpcServer)

	grpcListener, err := net.Listen("tcp", flags.GRPCAddr)
	if err != nil {
		return fail(fmt.Errorf("--grpc-addr: %w", err))
	}
	httpListener, err := net.Listen("tcp", flags.HTTPAddr)
	if err != nil {
		grpcListener.Close()
		return fail(fmt.Errorf("--http-addr: %w", err))
	}
	inst.GRPCAddr, inst.HTTPAddr = grpcListener.Addr().String(), httpListener.Addr().String()

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", inst.readyz)
	mux.Handle("GET /{$}", status.Handler(status.Source{Version: Version, Revision: Revision, Organizations: cfg.Names(),
		Registry: inst.Registry, Router: inst.Router, Journal: inst.journal, Sweeper: func() string { return sweeperState(flags, &inst.leading) },
		Redact: secretSet.Redact}))
	inst.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() {
		if err := inst.grpcServer.Serve(grpcListener); err != nil {
			log.WithError(err).Error("gRPC server stopped")
		}
	}()
	go func() {
		if err := inst.httpServer.Serve(httpListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("HTTP server stopped")
		}
	}()

	startKeeper(ctx, flags, inst, m, log)
	if err := startSweeper(ctx, flags, inst, m, log); err != nil {
		inst.grpcServer.Stop()
		_ = inst.httpServer.Close()
		return fail(err)
	}

	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus("externalscaler.ExternalScaler", healthpb.HealthCheckResponse_SERVING)
	inst.ready.Store(true)
	log.WithFields(logrus.Fields{"version": Version, "grpc": inst.GRPCAddr, "http": inst.HTTPAddr, "organizations": cfg.Names(),
		"refreshInterval": flags.RefreshInterval.String(), "staleAfter": flags.StaleAfter.String()}).Info("azdo-keda-scaler started")

	go func() {
		<-ctx.Done()
		healthServer.Shutdown()
		inst.ready.Store(false)
		stopped := make(chan struct{})
		go func() { inst.grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			inst.grpcServer.Stop() // streams stay open until their clients leave
		}
		shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = inst.httpServer.Shutdown(shutdownCtx)
		if inst.Demo != nil {
			inst.Demo.Close()
		}
		close(inst.done)
	}()

	if inst.Demo != nil {
		go inst.runDemoReport(ctx, flags.RoutingWarmup, stdout, log)
	}
	return inst, nil
}

// Stop stops the instance and waits for its servers to close.
func (inst *Instance) Stop() {
	inst.cancel()
	<-inst.done
}

// readyz is ready once the servers listen. It does not follow Azure
// DevOps' health on purpose: an outage must reach KEDA as this scaler's
// Unavailable answers, with their cause, not as a Service without
// endpoints.
func (inst *Instance) readyz(w http.ResponseWriter, _ *http.Request) {
	if !inst.ready.Load() {
		http.Error(w, "starting or stopping\n", http.StatusServiceUnavailable)
		return
	}
	msg := "ok\n"
	if err := inst.Registry.Ready(); err != nil {
		msg = "ok (degraded: " + secrets.Truncate(inst.secrets.Redact(err.Error()), service.MaxMessage) + ")\n"
	}
	_, _ = io.WriteString(w, msg)
}

func loadConfig(flags *config.Flags, inst *Instance) (*config.File, error) {
	switch {
	case flags.Demo:
		d, err := demo.Start()
		if err != nil {
			return nil, fmt.Errorf("starting the demo organization: %w", err)
		}
		inst.Demo = d
		return config.WithPAT(demo.Organization, d.URL, azdo.StaticPAT(d.PAT)), nil
	case flags.ConfigFile != "":
		return config.LoadFile(flags.ConfigFile)
	default:
		return config.SingleOrganization(flags.OrgURL, flags.PATFile, flags.PAT)
	}
}

func serverTLS(flags *config.Flags) (credentials.TransportCredentials, error) {
	// Loaded on every handshake, so that cert-manager renewals apply
	// without a restart.
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(flags.TLSCertFile, flags.TLSKeyFile)
		return &c, err
	}
	if _, err := getCert(nil); err != nil {
		return nil, fmt.Errorf("--grpc-tls-cert/--grpc-tls-key: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}
	if flags.TLSClientCAFile != "" {
		pem, err := os.ReadFile(flags.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--grpc-tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--grpc-tls-client-ca: no certificate in %s", flags.TLSClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// demoUnfinished is the number of unfinished jobs of a demo pool in the
// scaler's latest snapshot.
func (inst *Instance) demoUnfinished(ctx context.Context, pool string) (int, error) {
	p, err := inst.Registry.Resolve(ctx, demo.Organization, pool, 0)
	if err != nil {
		return 0, err
	}
	poller, err := inst.Registry.Poller(demo.Organization, p)
	if err != nil {
		return 0, err
	}
	snap, err := poller.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	return len(snap.Jobs), nil
}

func (inst *Instance) runDemoReport(ctx context.Context, warmup time.Duration, out io.Writer, log logrus.FieldLogger) {
	d, grpcAddr, unfinished := inst.Demo, inst.GRPCAddr, inst.demoUnfinished
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.WithError(err).Error("demo: cannot reach the scaler's own gRPC service")
		return
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	fmt.Fprintf(out, "\nDemo: a simulated Azure DevOps organization at %s with pools linux, windows and gpu.\n"+
		"Jobs arrive, single-run agent pods take them, and they finish. Every 5s this shows what each sample\n"+
		"ScaledJob would get from the scaler (the same gRPC calls KEDA makes, on %s), and per pool the\n"+
		"unfinished jobs beside the sum of the counts: one pod per job. For the first %s after the first\n"+
		"call, waiting jobs are held while the scaler learns every trigger (--routing-warmup). Ctrl-C stops.\n\n",
		d.URL, grpcAddr, warmup)
	next := time.NewTimer(500 * time.Millisecond)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		demo.Report(callCtx, client, unfinished, out)
		cancel()
		next.Reset(5 * time.Second)
	}
}
