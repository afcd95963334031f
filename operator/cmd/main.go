// Command wsedge-operator runs the WSEdgeScaler controller: replicas by
// connections per pod, emptiest-first scale-down, rebalancing by shedding.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
	"github.com/wsedge/wsedge/operator/internal/controller"
	"github.com/wsedge/wsedge/operator/internal/podapi"
)

// config is every flag, parsed once here.
type config struct {
	metricsAddr    string
	probeAddr      string
	leaderElect    bool
	leaderID       string
	namespace      string
	scaler         string
	podTimeout     time.Duration
	podConcurrency int
	logLevel       string
}

func parse(args []string) (config, error) {
	var c config
	fs := flags(&c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.podTimeout <= 0 || c.podConcurrency < 1 {
		return c, fmt.Errorf("-pod-timeout and -pod-concurrency must be positive")
	}
	return c, nil
}

// flags binds every flag to c.
func flags(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("wsedge-operator", flag.ContinueOnError)
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics (wsedge_operator_* and controller-runtime's); 0 turns it off (default :8080)")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (default :8081)")
	fs.BoolVar(&c.leaderElect, "leader-elect", true, "elect one active replica through a Lease (default true)")
	fs.StringVar(&c.leaderID, "leader-election-id", "wsedge-operator.wsedge.io", "name of the Lease (default wsedge-operator.wsedge.io)")
	fs.StringVar(&c.namespace, "namespace", "", "watch only this namespace, so a namespaced Role suffices; empty: all namespaces (default \"\")")
	fs.StringVar(&c.scaler, "scaler", "", "reconcile only the WSEdgeScaler of this name; empty: every one it sees (default \"\")")
	fs.DurationVar(&c.podTimeout, "pod-timeout", 2*time.Second, "deadline of one request to a pod's admin endpoint (default 2s)")
	fs.IntVar(&c.podConcurrency, "pod-concurrency", 16, "pods read at once per scaler (default 16)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error (default info)")
	return fs
}

func main() {
	cfg, err := parse(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the flag set printed the usage; asking for help is not an error
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "log-level:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctrl.SetLogger(logr.FromSlogHandler(logger.Handler()))
	if err := run(cfg, logger); err != nil {
		logger.Error("operator stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, logger *slog.Logger) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	if err := wsedgev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("scheme: %w", err)
	}
	opts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: cfg.metricsAddr},
		HealthProbeBindAddress:        cfg.probeAddr,
		LeaderElection:                cfg.leaderElect,
		LeaderElectionID:              cfg.leaderID,
		LeaderElectionReleaseOnCancel: true,
	}
	if cfg.namespace != "" {
		opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{cfg.namespace: {}}}
		opts.LeaderElectionNamespace = cfg.namespace
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), opts)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	r := &controller.Reconciler{
		Client:      mgr.GetClient(),
		Recorder:    mgr.GetEventRecorder("wsedge-operator"),
		Pods:        podapi.New(cfg.podTimeout),
		Resolver:    podapi.PodIP{},
		Metrics:     controller.NewMetrics(metrics.Registry),
		Concurrency: cfg.podConcurrency,
		Only:        cfg.scaler,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	logger.Info("starting", "namespace", cfg.namespace, "leader_elect", cfg.leaderElect)
	return mgr.Start(ctrl.SetupSignalHandler())
}
