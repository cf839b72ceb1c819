// Package app wires the scaler together: configuration, Azure DevOps
// clients, pollers, the gRPC service, the HTTP endpoints, the sweeper and
// the demo. cmd/azdo-keda-scaler only calls Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/budget"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/cluster"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/entra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/logging"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/mtls"
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

// Run runs the scaler until ctx ends: cmd/azdo-keda-scaler's main.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == mtls.CommandName {
		return mtls.Command(args[1:], time.Now(), stdout, stderr)
	}
	if len(args) > 0 && args[0] == status.ExplainCommandName {
		return status.Explain(ctx, args[1:], stdout, stderr)
	}
	flags, err := config.Parse("azdo-keda-scaler", args, getenv, stderr)
	if err != nil {
		return err
	}
	if flags.ShowVersion {
		_, err := fmt.Fprintf(stdout, "azdo-keda-scaler %s (revision %s, %s)\n", Version, Revision, runtime.Version())
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inst, err := start(ctx, flags, stderr, stdout)
	if err != nil {
		return err
	}
	<-ctx.Done()
	inst.Stop()
	return nil
}

// StartArgs starts the scaler as Run does, from command-line arguments
// (AZDO_* variables from getenv), logging to logs, and returns once it
// listens; the caller stops it. The app tests, test/scalertest and the
// benchmark start the scaler only through it.
func StartArgs(ctx context.Context, args []string, getenv func(string) string, logs io.Writer) (*Instance, error) {
	flags, err := config.Parse("azdo-keda-scaler", args, getenv, io.Discard)
	if err != nil {
		return nil, err
	}
	return start(ctx, flags, logs, io.Discard)
}

// start sets up logging (client-go's klog too, so that --log-format json
// stays JSON) and starts the instance.
func start(ctx context.Context, flags *config.Flags, logs, stdout io.Writer) (*Instance, error) {
	log, secretSet, err := logging.New(logs, flags.LogFormat, flags.LogLevel)
	if err != nil {
		return nil, err
	}
	klog.SetLogger(logrusr.New(log))
	return Start(ctx, flags, log, secretSet, stdout)
}

// Instance is a running scaler.
type Instance struct {
	GRPCAddr string
	HTTPAddr string
	Config   *config.File
	Registry *pools.Registry
	Router   *routing.Router
	Budget   *budget.Keeper
	Clients  map[string]*azdo.Client
	Demo     *demo.Org

	grpcServer *grpc.Server
	service    *service.Service
	cluster    *cluster.Reader // with --read-cluster
	health     *health.Server
	httpServer *http.Server
	standby    *http.Server // /api/v1/standby (--read-cluster); nil: none
	parents    *sweeper.Parents
	journal    *sweeper.Journal
	leading    atomic.Bool // holds the sweeper Lease (with --leader-elect)
	secrets    *secrets.Set
	cancel     context.CancelFunc
	done       chan struct{}
	ready      atomic.Bool
	creds      credentialCheck
	demand     *service.Demand // standby auto's demand history
	// StandbyAddr is where /api/v1/standby listens (--read-cluster).
	StandbyAddr string
}

// Start builds every part, then runs them, and returns once the servers
// listen. Every text the instance emits is redacted with secretSet, the
// set its logger uses too.
func Start(ctx context.Context, flags *config.Flags, log *logrus.Logger, secretSet *secrets.Set, stdout io.Writer) (*Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	inst := &Instance{cancel: cancel, done: make(chan struct{}), parents: sweeper.NewParents(), journal: sweeper.NewJournal(), secrets: secretSet}
	m, reg, err := inst.build(ctx, flags, log)
	if err != nil {
		cancel()
		if inst.Demo != nil {
			inst.Demo.Close()
		}
		return nil, err
	}
	if err := inst.run(ctx, flags, m, reg, log, stdout); err != nil {
		cancel()
		if inst.Demo != nil {
			inst.Demo.Close()
		}
		return nil, err
	}
	return inst, nil
}

// build makes the parts: configuration (and the demo organization), the
// metrics, one Azure DevOps client per organization, the pool registry,
// the router, the gRPC server and the HTTP handler. Nothing listens yet.
func (inst *Instance) build(ctx context.Context, flags *config.Flags, log *logrus.Logger) (*metrics.Metrics, *prometheus.Registry, error) {
	cfg, err := loadConfig(flags, inst)
	if err != nil {
		return nil, nil, err
	}
	inst.Config = cfg
	if inst.Demo != nil {
		inst.secrets.Add(inst.Demo.PAT)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, Version, Revision)

	sources, err := inst.buildClients(flags, m, log)
	if err != nil {
		return nil, nil, err
	}
	inst.Registry = pools.NewRegistry(ctx, sources, pools.Options{RefreshInterval: flags.RefreshInterval, StaleAfter: flags.StaleAfter,
		IdleAfter: flags.PollerIdle, AttemptTimeout: flags.AzdoTimeout, MinRefresh: flags.MinRefresh, DemandWait: flags.DemandWait,
		Observer: m, Logger: log})
	routerOpts := routing.Options{Warmup: flags.RoutingWarmup, ForgetAfterPolls: flags.TriggerForgetPolls,
		ForgetMin: flags.TriggerForgetMin, ForgetMax: flags.TriggerForgetMax, Given: flags.ReadCluster, HoldBehindOlder: flags.HoldBehindOlder,
		Observer: m, Logger: log}
	inst.demand = service.NewDemand(nil)
	routerOpts.Observer = routing.Observers{m, inst.demand}
	inst.Router = routing.NewRouter(routerOpts)
	inst.Budget = inst.buildBudget(flags, m, log)
	inst.Router.SetBudget(inst.Budget)
	inst.service = service.New(inst.Registry, cfg, cfg, service.Options{Logger: log, OnParent: inst.parents.Add, Router: inst.Router,
		Verify: flags.ReadCluster, Demand: inst.demand, Standby: m})
	if err := inst.buildGRPC(flags, inst.service, reg); err != nil {
		return nil, nil, err
	}
	inst.httpServer = &http.Server{Handler: inst.httpHandler(flags, reg), ReadHeaderTimeout: 10 * time.Second}
	return m, reg, nil
}

// buildClients makes one Azure DevOps client per organization, signing in
// with its PAT or with Microsoft Entra ID tokens.
func (inst *Instance) buildClients(flags *config.Flags, m *metrics.Metrics, log *logrus.Logger) ([]pools.Source, error) {
	inst.Clients = map[string]*azdo.Client{}
	var sources []pools.Source
	for i := range inst.Config.Organizations {
		o := &inst.Config.Organizations[i]
		opts := azdo.Options{Name: o.Name, URL: o.URL, Timeout: flags.AzdoTimeout, QPS: flags.AzdoQPS, Observer: m, Logger: log, Secrets: inst.secrets}
		if o.Auth == config.AuthPAT {
			opts.PAT = o.PAT()
		} else {
			eo := o.EntraOptions()
			eo.Secrets = inst.secrets
			tokens, err := entra.New(eo)
			if err != nil {
				return nil, fmt.Errorf("organization %s: %w", o.Name, err)
			}
			opts.Token = tokens
		}
		c, err := azdo.New(opts)
		if err != nil {
			return nil, err
		}
		inst.Clients[o.Name] = c
		sources = append(sources, c)
	}
	return sources, nil
}

// buildBudget makes the keeper of each organization's parallel-job
// budget: its own setting (parallelJobs) or --parallel-jobs.
func (inst *Instance) buildBudget(flags *config.Flags, m *metrics.Metrics, log *logrus.Logger) *budget.Keeper {
	def, _ := budget.ParseSetting(flags.ParallelJobs) // validated with the flags
	settings, sources := map[string]budget.Setting{}, map[string]budget.UsageSource{}
	for _, o := range inst.Config.Organizations {
		s := def
		if o.ParallelJobs != "" {
			s, _ = budget.ParseSetting(o.ParallelJobs) // validated with the file
		}
		settings[o.Name], sources[o.Name] = s, inst.Clients[o.Name]
	}
	return budget.NewKeeper(settings, sources, inst.Registry.Latest, budget.Options{Interval: flags.RefreshInterval,
		StaleAfter: flags.StaleAfter, Wait: flags.DemandWait, Runnable: inst.Router.Runnable, Generation: inst.Router.Generation,
		Observer: m, Logger: log})
}

// buildGRPC makes the gRPC server: the external scaler, gRPC health, its
// metrics, and redaction of every status message.
func (inst *Instance) buildGRPC(flags *config.Flags, svc *service.Service, reg *prometheus.Registry) error {
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	cleanUnary, cleanStream := service.SanitizeErrors(inst.secrets)
	serverOpts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(grpcMetrics.UnaryServerInterceptor(), cleanUnary),
		grpc.ChainStreamInterceptor(grpcMetrics.StreamServerInterceptor(), cleanStream)}
	if flags.TLSCertFile != "" {
		cfg, err := mtls.ServerConfig(mtls.Files{Cert: flags.TLSCertFile, Key: flags.TLSKeyFile,
			ClientCA: flags.TLSClientCAFile, ClientNames: flags.TLSClientNames})
		if err != nil {
			return fmt.Errorf("gRPC TLS (--grpc-tls-*): %w", err)
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	inst.grpcServer = grpc.NewServer(serverOpts...)
	pb.RegisterExternalScalerServer(inst.grpcServer, svc)
	inst.health = health.NewServer()
	healthpb.RegisterHealthServer(inst.grpcServer, inst.health)
	grpcMetrics.InitializeMetrics(inst.grpcServer)
	return nil
}

// httpHandler serves /metrics, /healthz, /readyz and the status page.
func (inst *Instance) httpHandler(flags *config.Flags, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", inst.readyz)
	src := status.Source{Version: Version, Revision: Revision, Organizations: inst.Config.Names(),
		Registry: inst.Registry, Router: inst.Router, Journal: inst.journal, Sweeper: func() string { return sweeperState(flags, &inst.leading) },
		Redact: inst.secrets.Redact, Standby: inst.standbyView}
	mux.Handle("GET /{$}", status.Handler(src))
	mux.Handle("GET /api/v1/jobs", status.JSONHandler(src))
	return mux
}

// run listens and serves, starts the workers (the demo, the placeholder
// keeper, the sweeper), marks the instance ready, and stops it all when ctx
// ends.
func (inst *Instance) run(ctx context.Context, flags *config.Flags, m *metrics.Metrics, reg *prometheus.Registry, log *logrus.Logger, stdout io.Writer) error {
	grpcListener, err := net.Listen("tcp", flags.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	httpListener, err := net.Listen("tcp", flags.HTTPAddr)
	if err != nil {
		grpcListener.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	inst.GRPCAddr, inst.HTTPAddr = grpcListener.Addr().String(), httpListener.Addr().String()
	if flags.ReadCluster {
		// Before serving: no call is judged against an empty set of triggers.
		if inst.cluster, err = startClusterReader(ctx, flags, inst.service, log); err != nil {
			grpcListener.Close()
			httpListener.Close()
			return err
		}
	}
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
	if err := inst.serveStandby(flags, log); err != nil {
		inst.grpcServer.Stop()
		_ = inst.httpServer.Close()
		return err
	}

	if inst.Demo != nil {
		go inst.Demo.Simulate(ctx, time.Second)
	}
	startKeeper(ctx, flags, inst, m, log)
	go inst.Budget.Run(ctx)
	go inst.creds.run(ctx, inst.Clients, m, log)
	go inst.rebuildDemand(ctx, log)
	if err := startSweeper(ctx, flags, inst, m, log); err != nil {
		inst.grpcServer.Stop()
		_ = inst.httpServer.Close()
		if inst.standby != nil {
			_ = inst.standby.Close()
		}
		return err
	}

	inst.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	inst.health.SetServingStatus("externalscaler.ExternalScaler", healthpb.HealthCheckResponse_SERVING)
	inst.ready.Store(true)
	log.WithFields(logrus.Fields{"version": Version, "grpc": inst.GRPCAddr, "http": inst.HTTPAddr, "organizations": inst.Config.Names(),
		"refreshInterval": flags.RefreshInterval.String(), "staleAfter": flags.StaleAfter.String()}).Info("azdo-keda-scaler started")

	go inst.stopWhenDone(ctx)
	if inst.Demo != nil {
		go inst.runDemoReport(ctx, flags.RoutingWarmup, stdout, log)
	}
	return nil
}

// stopWhenDone shuts the servers down once ctx ends: gRPC health says
// NOT_SERVING, calls in flight get 5 seconds, then everything closes.
func (inst *Instance) stopWhenDone(ctx context.Context) {
	<-ctx.Done()
	inst.health.Shutdown()
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
	if inst.standby != nil {
		_ = inst.standby.Shutdown(shutdownCtx)
	}
	if inst.Demo != nil {
		inst.Demo.Close()
	}
	close(inst.done)
}

// Stop stops the instance and waits for its servers to close.
func (inst *Instance) Stop() {
	inst.cancel()
	<-inst.done
}

// readyz is ready once the servers listen and no organization's
// credential was refused. It does not follow Azure DevOps' health on
// purpose: an outage must reach KEDA as this scaler's Unavailable answers,
// with their cause, not as a Service without endpoints.
func (inst *Instance) readyz(w http.ResponseWriter, _ *http.Request) {
	if !inst.ready.Load() {
		http.Error(w, "starting or stopping\n", http.StatusServiceUnavailable)
		return
	}
	if p := inst.creds.problem(); p != "" {
		// A refused credential is not an outage: nothing works until an
		// operator fixes it, so say so where they look first.
		http.Error(w, "not ready: Azure DevOps refuses a credential: "+secrets.Truncate(inst.secrets.Redact(p), service.MaxMessage)+"\n",
			http.StatusServiceUnavailable)
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

// demoUnfinished is the number of unfinished jobs of a demo pool in the
// scaler's latest snapshot.
func (inst *Instance) demoUnfinished(ctx context.Context, pool string) (int, error) {
	p, err := inst.Registry.Resolve(ctx, demo.Organization, pool, 0)
	if err != nil {
		return 0, err
	}
	poller, err := inst.Registry.Poller(p)
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
