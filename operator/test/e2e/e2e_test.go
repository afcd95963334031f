// Package e2e runs the operator against a real control plane with fake
// nodes (kube-controller-manager, kube-scheduler, kwok), where each fake pod
// of a Deployment is a real local wsedge process sharing one throw-away
// Redis. Clients connect through a random-choice "Service", stay, follow
// reconnect hints and resume; a publisher streams broadcasts through Redis.
// The same scenario runs with the operator and with an HPA-like controller
// (scale up without rebalancing, scale down deleting random pods), and the
// report goes to operator/test/results/e2e.{json,md}.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/wsedge/wsedge/test/k8s/kubecluster"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
	"github.com/wsedge/wsedge/operator/internal/controller"
	"github.com/wsedge/wsedge/operator/internal/podapi"
)

const repoRoot = "../../.."

// env is what both scenarios share: the control plane, Redis, the built
// wsedge binary and the admin token.
type env struct {
	cluster   *kubecluster.Cluster
	cfg       *rest.Config
	c         client.Client
	scheme    *runtime.Scheme
	wsedge    string
	redis     string
	token     string
	tokenFile string
	dir       string
}

func setup(t *testing.T) *env {
	t.Helper()
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil)))
	e := &env{dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	tools, err := kubecluster.FindTools(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	// The server under test, built from the root module (never imported).
	e.wsedge = filepath.Join(e.dir, "wsedge")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.wsedge, "./cmd/wsedge")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build wsedge: %v\n%s", err, out)
	}
	e.redis = startRedis(t, e.dir)

	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	e.token = hex.EncodeToString(tok)
	e.tokenFile = filepath.Join(e.dir, "admin-token")
	if err := os.WriteFile(e.tokenFile, []byte(e.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cdir := filepath.Join(e.dir, "cluster")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.cluster, err = kubecluster.Start(ctx, tools, cdir, kubecluster.Options{Nodes: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cluster.Stop)
	if _, err := e.cluster.Kubectl(ctx, "", "apply", "--server-side", "-f", "../../config/crd/bases/wsedge.io_wsedgescalers.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cluster.Kubectl(ctx, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/wsedgescalers.wsedge.io"); err != nil {
		t.Fatal(err)
	}
	e.cfg, err = clientcmd.BuildConfigFromFlags("", e.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.QPS, e.cfg.Burst = 100, 200
	e.scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(e.scheme); err != nil {
		t.Fatal(err)
	}
	if err := wsedgev1.AddToScheme(e.scheme); err != nil {
		t.Fatal(err)
	}
	e.c, err = client.New(e.cfg, client.Options{Scheme: e.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startRedis runs a throw-away redis-server (Debian package) on a free port.
func startRedis(t *testing.T, dir string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: apt-get install -y redis-server")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("redis did not start")
		}
	}
}

// Scenario sizes: 160 clients, 40 per pod wanted, 2 → 4 → 2 pods.
const (
	clients     = 160
	target      = 40
	leavers     = 81 // 79 clients + the publisher stay: 80 = 2 pods × 40
	threshold   = 20 // percent
	evictRate   = 20 // sockets per second, whole Deployment
	perRound    = 25 // percent of one pod per round
	spreadSec   = 2
	jitterSec   = 1
	hintGrace   = 3 * time.Second // connect + hello on a loaded 2-core machine
	sampleEvery = 250 * time.Millisecond
)

func TestOperatorVersusRandomDelete(t *testing.T) {
	e := setup(t)
	op := runScenario(t, e, "operator")
	hpa := runScenario(t, e, "random-delete")
	writeReport(t, []*scenario{op, hpa})
}

// phase is one measured stretch of a scenario.
type phase struct {
	Name          string  `json:"name"`
	StartS        float64 `json:"start_s"`
	EndS          float64 `json:"end_s"`
	SocketsMoved  int     `json:"sockets_moved"`
	PeakReconnect int     `json:"peak_reconnects_per_s"`
	PeakEvictions int     `json:"peak_evictions_per_s"`
	// MaxEvictionsInSpread: most hints in any window of the drain spread
	// (the cap per round is evictRate × spread).
	MaxEvictionsInSpread int    `json:"max_evictions_in_spread_window,omitempty"`
	MaxLateMS            int64  `json:"max_late_ms"`
	Note                 string `json:"note,omitempty"`
}

type sample struct {
	T        float64          `json:"t_s"`
	Replicas int32            `json:"replicas"`
	Pods     map[string]int64 `json:"connections"`
}

type scenario struct {
	Name      string   `json:"name"`
	Phases    []phase  `json:"phases"`
	Samples   []sample `json:"samples"`
	Published int64    `json:"published"` // last seq: broadcasts the session numbered
	// PublisherWrites counts broadcast frames the publisher wrote;
	// PublisherSeen those it received back numbered (a write racing the
	// close of its own socket by a shed or drain may never be read).
	PublisherWrites int64    `json:"publisher_writes"`
	PublisherSeen   int64    `json:"publisher_seen_sequenced"`
	MessagesLost    int64    `json:"messages_lost"`
	Duplicates      int64    `json:"duplicates"`
	RecoveryFails   int      `json:"recovery_failed"`
	DeletedPods     []string `json:"deleted_pods"`
	DeletedConns    []int64  `json:"deleted_pod_connections"`
	EmptiestPods    []string `json:"emptiest_pods_at_scale_down"`
	// EmptiestPair and RandomPairMean: connections on the two emptiest pods,
	// and on two pods picked at random on average, at the scale-down.
	EmptiestPair   int64    `json:"emptiest_pair_connections"`
	RandomPairMean float64  `json:"random_pair_mean_connections"`
	Events         []string `json:"operator_events,omitempty"`

	start time.Time
	mu    sync.Mutex
}

func (s *scenario) since(t time.Time) float64 { return t.Sub(s.start).Seconds() }

func runScenario(t *testing.T, e *env, mode string) *scenario {
	sc := &scenario{Name: mode, start: time.Now()}
	t.Run(mode, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ns := mode
		must(t, e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		must(t, e.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "edge-admin", Namespace: ns},
			Data: map[string][]byte{"token": []byte(e.token)}}))
		sel := map[string]string{"app": "edge"}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec: corev1.PodSpec{
						Containers:                    []corev1.Container{{Name: "wsedge", Image: "wsedge"}},
						TerminationGracePeriodSeconds: ptr.To[int64](30),
						NodeSelector:                  map[string]string{"type": "kwok"},
						Tolerations:                   []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
					},
				},
			},
		}
		must(t, e.c.Create(ctx, dep))

		f := newFleet(e, ns, sel, filepath.Join(e.dir, ns), 7)
		fctx, fcancel := context.WithCancel(ctx)
		fdone := make(chan struct{})
		go func() { f.run(fctx); close(fdone) }()
		defer func() { fcancel(); <-fdone }()
		waitFor(t, "2 processes serving", 90*time.Second, func() bool { return len(f.serving()) == 2 })

		// Samples of replicas and connections per pod.
		sctx, scancel := context.WithCancel(ctx)
		sdone := make(chan struct{})
		go func() { sampleLoop(sctx, e, f, ns, sc); close(sdone) }()
		defer func() { scancel(); <-sdone }()

		// Clients connect and stay; the publisher streams through Redis.
		j := &journal{}
		sess := "e2e-" + mode
		var cl []*wsClient
		for i := range clients {
			c := newClient(i, sess, f, j)
			cl = append(cl, c)
			go c.run(ctx)
			if i%20 == 19 {
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitFor(t, "every client greeted", 60*time.Second, func() bool {
			for _, c := range cl {
				if _, _, _, _, _, _, g := c.state(); !g {
					return false
				}
			}
			return true
		})
		pub := newClient(-1, sess, f, j)
		pub.pub = true
		go pub.run(ctx)
		waitFor(t, "the stream flowing", 30*time.Second, func() bool {
			_, last, _, _, _, _, _ := cl[0].state()
			return last > 5
		})

		// Scale up.
		upStart := time.Now()
		var mgrDone chan struct{}
		if mode == "operator" {
			mgrDone = startOperator(t, ctx, e, ns, f)
			must(t, e.c.Create(ctx, &wsedgev1.WSEdgeScaler{
				ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns},
				Spec: wsedgev1.WSEdgeScalerSpec{
					ScaleTargetRef: wsedgev1.ScaleTargetRef{Name: "edge"},
					MinReplicas:    2, MaxReplicas: 4, TargetConnectionsPerPod: target,
					ScaleUp:   &wsedgev1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](0), MaxPods: ptr.To[int32](4), PeriodSeconds: ptr.To[int32](60)},
					ScaleDown: &wsedgev1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](5), MaxPods: ptr.To[int32](2), PeriodSeconds: ptr.To[int32](5)},
					Rebalance: wsedgev1.Rebalance{Enabled: ptr.To(true), ThresholdPercent: threshold, MaxEvictionsPerSecond: evictRate, MaxPercentPerRound: perRound},
					Drain:     wsedgev1.Drain{SpreadSeconds: spreadSec, JitterSeconds: jitterSec},
					AdminPort: 9090, AdminTokenSecretRef: &wsedgev1.SecretKeyRef{Name: "edge-admin", Key: "token"},
					SyncPeriodSeconds: 1,
				},
			}))
		} else {
			// What an HPA does when the metric crosses its target: raise
			// spec.replicas; nothing moves the existing sockets.
			setReplicas(t, e, ns, 4)
		}
		waitFor(t, "4 processes serving", 120*time.Second, func() bool { return len(f.serving()) == 4 && replicas(t, e, ns) == 4 })
		upEnd := time.Now()
		sc.Phases = append(sc.Phases, measure(sc, j, "scale-up 2→4", upStart, upEnd))

		// Rebalance (operator) or nothing (HPA-like) for as long.
		rbStart := time.Now()
		balancedSince := time.Time{}
		if mode == "operator" {
			waitFor(t, "every pod within the threshold", 240*time.Second, func() bool {
				if withinThreshold(f, e) {
					if balancedSince.IsZero() {
						balancedSince = time.Now()
					}
					return time.Since(balancedSince) > 3*time.Second
				}
				balancedSince = time.Time{}
				return false
			})
		} else {
			time.Sleep(30 * time.Second)
		}
		rbEnd := time.Now()
		ph := measure(sc, j, "rebalance", rbStart, rbEnd)
		ph.MaxEvictionsInSpread = maxInWindow(j.between(rbStart, rbEnd, "hint"), spreadSec*time.Second)
		if mode == "operator" {
			ph.Note = fmt.Sprintf("every pod within %d%% of the mean; cap %d sockets/s, %d per %d s round", threshold, evictRate, evictRate*spreadSec, spreadSec)
			if ph.MaxEvictionsInSpread > evictRate*spreadSec {
				t.Errorf("rebalance: %d evictions within one %d s window, over the cap %d", ph.MaxEvictionsInSpread, spreadSec, evictRate*spreadSec)
			}
		} else {
			ph.Note = "no rebalancing: the new pods only get new connections"
		}
		sc.Phases = append(sc.Phases, ph)

		// Scale down: half the clients leave (the same ones in both
		// scenarios), then 4 → 2.
		rng := mrand.New(mrand.NewPCG(42, 42))
		perm := rng.Perm(clients)
		for _, i := range perm[:leavers] {
			cl[i].leave()
		}
		waitFor(t, "connections settled after departures", 30*time.Second, func() bool {
			return totalConns(f, e) == clients-leavers+1
		})
		loads := map[string]int64{}
		for _, pr := range f.serving() {
			if st, err := f.status(pr); err == nil {
				loads[pr.pod] = st.Connections
			}
		}
		names := make([]string, 0, len(loads))
		for n := range loads {
			names = append(names, n)
		}
		sort.Slice(names, func(a, b int) bool {
			return loads[names[a]] < loads[names[b]] || loads[names[a]] == loads[names[b]] && names[a] < names[b]
		})
		sc.EmptiestPods = names[:2]
		// What deleting two pods at random moves on average, from the same
		// loads: the mean of every pair's sum.
		var pairs, sum int64
		for a := range names {
			for b := a + 1; b < len(names); b++ {
				pairs++
				sum += loads[names[a]] + loads[names[b]]
			}
		}
		sc.RandomPairMean = float64(sum) / float64(pairs)
		sc.EmptiestPair = loads[names[0]] + loads[names[1]]
		downStart := time.Now()
		before := map[string]bool{}
		for _, n := range names {
			before[n] = true
		}
		if mode != "operator" {
			// The HPA lowers replicas and the ReplicaSet deletes pods of
			// its choosing; here two pods picked at random, made the
			// cheapest so the ReplicaSet deletes exactly those.
			pick := mrand.New(mrand.NewPCG(99, 99)).Perm(len(names))[:2]
			for i, n := range names {
				cost := "100"
				if i == pick[0] || i == pick[1] {
					cost = "-100"
				}
				patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, controller.DeletionCostAnnotation, cost)
				must(t, e.c.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: ns}}, client.RawPatch(types.MergePatchType, patch)))
			}
			setReplicas(t, e, ns, 2)
		}
		waitFor(t, "2 processes serving, the others exited", 120*time.Second, func() bool {
			return replicas(t, e, ns) == 2 && len(f.serving()) == 2 && len(f.exited()) == 2
		})
		for n, err := range f.exited() {
			sc.DeletedPods = append(sc.DeletedPods, n)
			sc.DeletedConns = append(sc.DeletedConns, loads[n])
			if err != nil {
				t.Errorf("process of deleted pod %s: %v", n, err)
			}
		}
		sort.Strings(sc.DeletedPods)
		// Every client back: each remaining one greeted again.
		waitFor(t, "every remaining client connected", 60*time.Second, func() bool {
			return totalConns(f, e) >= clients-leavers+1
		})
		downEnd := time.Now()
		sc.Phases = append(sc.Phases, measure(sc, j, "scale-down 4→2", downStart, downEnd))
		if mode == "operator" {
			// The deleted pods held the two smallest loads (ties may go
			// either way).
			got := append([]int64(nil), sc.DeletedConns...)
			slices.Sort(got)
			if want := []int64{loads[names[0]], loads[names[1]]}; !slices.Equal(got, want) {
				t.Errorf("scale-down deleted %v holding %v; the emptiest held %v (loads %v)", sc.DeletedPods, got, want, loads)
			}
		}

		// Stop the stream, let it land, count what is missing.
		pub.leave()
		time.Sleep(2 * time.Second)
		var final int64
		for _, c := range cl {
			_, last, _, _, _, _, _ := c.state()
			final = max(final, last)
		}
		sc.Published = final
		sc.PublisherWrites = pub.sent.Load()
		_, _, sc.PublisherSeen, _, _, _, _ = pub.state()
		for i, c := range cl {
			_, last, _, gaps, dupes, failed, _ := c.state()
			sc.MessagesLost += gaps
			sc.Duplicates += dupes
			sc.RecoveryFails += len(failed)
			if !c.leaving.Load() {
				sc.MessagesLost += final - last
			}
			if gaps > 0 || len(failed) > 0 {
				t.Errorf("client %d: %d messages missing, recovery failed %v", i, gaps, failed)
			}
		}
		if sc.MessagesLost != 0 || sc.Duplicates != 0 {
			t.Errorf("%d messages lost, %d duplicates (published %d, last seq %d)", sc.MessagesLost, sc.Duplicates, sc.Published, final)
		}
		for _, p := range sc.Phases {
			if p.MaxLateMS > hintGrace.Milliseconds() {
				t.Errorf("%s: a client came back %d ms after its hint (grace %v)", p.Name, p.MaxLateMS, hintGrace)
			}
		}
		if errs := f.errors(); len(errs) > 0 {
			t.Errorf("fleet: %v", errs)
		}
		if mode == "operator" {
			sc.Events = scalerEvents(t, e, ns)
		}
		for _, c := range cl {
			if !c.leaving.Load() {
				c.leave()
			}
		}
		cancel()
		if mgrDone != nil {
			<-mgrDone
		}
	})
	return sc
}

// startOperator runs the controller in this process the way cmd/main.go
// does (manager, leader election, namespace cache), with the fleet as the
// pod resolver: fake pod IPs cannot be dialled.
func startOperator(t *testing.T, ctx context.Context, e *env, ns string, f *fleet) chan struct{} {
	t.Helper()
	mgr, err := ctrl.NewManager(e.cfg, ctrl.Options{
		Scheme:                        e.scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "wsedge-operator",
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	must(t, err)
	r := &controller.Reconciler{
		Client:      mgr.GetClient(),
		Recorder:    mgr.GetEventRecorder("wsedge-operator"),
		Pods:        podapi.New(2 * time.Second),
		Resolver:    f,
		Metrics:     controller.NewMetrics(prometheus.NewRegistry()),
		Concurrency: 8,
		Only:        "edge",
	}
	must(t, r.SetupWithManager(mgr))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	return done
}

func sampleLoop(ctx context.Context, e *env, f *fleet, ns string, sc *scenario) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s := sample{T: sc.since(time.Now()), Pods: map[string]int64{}}
		var d appsv1.Deployment
		if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "edge"}, &d); err == nil && d.Spec.Replicas != nil {
			s.Replicas = *d.Spec.Replicas
		}
		f.mu.Lock()
		var all []*proc
		for _, pr := range f.procs {
			select {
			case <-pr.done:
			default:
				all = append(all, pr)
			}
		}
		f.mu.Unlock()
		for _, pr := range all {
			if st, err := f.status(pr); err == nil {
				s.Pods[pr.pod] = st.Connections
			}
		}
		sc.mu.Lock()
		sc.Samples = append(sc.Samples, s)
		sc.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// measure summarises the journal over one phase.
func measure(sc *scenario, j *journal, name string, from, to time.Time) phase {
	hints := j.between(from, to, "hint")
	drops := j.between(from, to, "drop")
	backs := j.between(from, to, "back")
	p := phase{Name: name, StartS: sc.since(from), EndS: sc.since(to), SocketsMoved: len(hints) + len(drops),
		PeakEvictions: maxInWindow(hints, time.Second), PeakReconnect: maxInWindow(backs, time.Second)}
	for _, b := range backs {
		p.MaxLateMS = max(p.MaxLateMS, b.Late.Milliseconds())
	}
	return p
}

// maxInWindow is the most events within any window of length w.
func maxInWindow(evs []event, w time.Duration) int {
	sort.Slice(evs, func(a, b int) bool { return evs[a].At.Before(evs[b].At) })
	best, lo := 0, 0
	for hi := range evs {
		for evs[hi].At.Sub(evs[lo].At) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func withinThreshold(f *fleet, e *env) bool {
	var loads []int64
	var total int64
	for _, pr := range f.serving() {
		st, err := f.status(pr)
		if err != nil || st.Shedding > 0 {
			return false
		}
		loads = append(loads, st.Connections)
		total += st.Connections
	}
	if len(loads) != 4 || total == 0 {
		return false
	}
	mean := float64(total) / float64(len(loads))
	for _, l := range loads {
		if math.Abs(float64(l)-mean) > mean*threshold/100 {
			return false
		}
	}
	return true
}

func totalConns(f *fleet, e *env) int64 {
	var total int64
	for _, pr := range f.serving() {
		if st, err := f.status(pr); err == nil {
			total += st.Connections
		}
	}
	return total
}

func replicas(t *testing.T, e *env, ns string) int32 {
	var d appsv1.Deployment
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "edge"}, &d); err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func setReplicas(t *testing.T, e *env, ns string, n int32) {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
	must(t, e.c.Patch(context.Background(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: ns}},
		client.RawPatch(types.MergePatchType, patch)))
}

func scalerEvents(t *testing.T, e *env, ns string) []string {
	out, err := e.cluster.Kubectl(context.Background(), "", "get", "events.events.k8s.io", "-n", ns,
		"--sort-by=.metadata.creationTimestamp",
		"-o", `jsonpath={range .items[*]}{.regarding.kind} {.reason}: {.note}{"\n"}{end}`)
	if err != nil {
		t.Errorf("events: %v", err)
		return nil
	}
	var evs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		if kind == "WSEdgeScaler" && !strings.HasPrefix(rest, "PodUnreadable") {
			evs = append(evs, rest)
		}
	}
	return evs
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
