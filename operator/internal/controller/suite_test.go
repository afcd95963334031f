package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
	"github.com/wsedge/wsedge/operator/internal/podapi"
)

// One real kube-apiserver + etcd (envtest, binaries from hack/k8s-tools.sh)
// for the package; each test works in its own namespace.
var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client
	scheme  = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			panic(err)
		}
		if err := wsedgev1.AddToScheme(scheme); err != nil {
			panic(err)
		}
		testEnv = &envtest.Environment{
			CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
		}
		// envtest's own KUBEBUILDER_ASSETS wins; otherwise the binaries
		// hack/k8s-tools.sh built (it prints their directory last).
		if _, set := os.LookupEnv("KUBEBUILDER_ASSETS"); !set {
			out, err := exec.Command("bash", "../../../hack/k8s-tools.sh").Output()
			if err != nil {
				fmt.Fprintln(os.Stderr, "hack/k8s-tools.sh:", err)
				return 1
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			testEnv.BinaryAssetsDirectory = lines[len(lines)-1]
		}
		var err error
		cfg, err = testEnv.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "envtest:", err)
			return 1
		}
		defer func() { _ = testEnv.Stop() }()
		k8s, err = client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

var nsSeq struct {
	sync.Mutex
	n int
}

func namespace(t *testing.T) string {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("t%d", nsSeq.n)
	nsSeq.Unlock()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// fakePod is one pod's admin endpoint served on a real socket.
type fakePod struct {
	srv   *httptest.Server
	mu    sync.Mutex
	st    podapi.Status
	down  bool // answers 500
	sheds []podapi.ShedRequest
	auth  []string
}

func newFakePod(t *testing.T, token string, conns int64) *fakePod {
	f := &fakePod{st: podapi.Status{Connections: conns, Capacity: 10000, Ready: true}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if f.down {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/status":
			_ = json.NewEncoder(w).Encode(f.st)
		case r.Method == http.MethodPost && r.URL.Path == "/admin/shed":
			var req podapi.ShedRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if f.st.Shedding > 0 {
				http.Error(w, "busy", http.StatusConflict)
				return
			}
			f.sheds = append(f.sheds, req)
			w.WriteHeader(http.StatusAccepted)
			_ = json.NewEncoder(w).Encode(podapi.ShedResult{Accepted: req.Count, OverMS: req.OverMS})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePod) set(conns int64, fn func(*podapi.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Connections = conns
	if fn != nil {
		fn(&f.st)
	}
}

func (f *fakePod) shedReqs() []podapi.ShedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]podapi.ShedRequest(nil), f.sheds...)
}

// mapResolver sends each pod (by name) to its test server.
type mapResolver struct {
	mu sync.Mutex
	m  map[string]string
}

func (r *mapResolver) Resolve(pod *corev1.Pod, _ int32) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.m[pod.Name]; ok {
		return a, nil
	}
	return "", fmt.Errorf("no address for %s", pod.Name)
}

// unroutable is an address that refuses connections at once.
func unroutable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// fixture is a namespace with a Deployment, its ready pods (each served
// by a fakePod), the token Secret and a WSEdgeScaler.
type fixture struct {
	t        *testing.T
	ns       string
	dep      *appsv1.Deployment
	pods     map[string]*fakePod
	resolver *mapResolver
	rec      *Reconciler
	clock    time.Time
	stopRec  func()
}

const token = "s3cret-token"

func newFixture(t *testing.T, c client.Client, replicas int32, conns ...int64) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ns: namespace(t), pods: map[string]*fakePod{}, resolver: &mapResolver{m: map[string]string{}},
		clock: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	labels := map[string]string{"app": "wsedge"}
	f.dep = &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: f.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "wsedge", Image: "wsedge"}}},
			},
		},
	}
	must(t, k8s.Create(ctx, f.dep))
	must(t, k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admin", Namespace: f.ns},
		Data: map[string][]byte{"token": []byte(token + "\n")}}))
	for i, c := range conns {
		f.addPod(fmt.Sprintf("edge-%d", i), c)
	}
	// Events go to the API server for real (events.k8s.io/v1).
	cs := kubernetes.NewForConfigOrDie(cfg)
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	f.stopRec = func() { close(stop); b.Shutdown() }
	t.Cleanup(f.stopRec)
	f.rec = &Reconciler{
		Client:      c,
		Recorder:    b.NewRecorder(scheme, "wsedge-operator"),
		Pods:        podapi.New(time.Second),
		Resolver:    f.resolver,
		Metrics:     NewMetrics(prometheus.NewRegistry()),
		Concurrency: 4,
		Now:         func() time.Time { return f.clock },
	}
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// addPod creates a pod and makes it Running and Ready (no kubelet here).
func (f *fixture) addPod(name string, conns int64) *fakePod {
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{"app": "wsedge"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "wsedge", Image: "wsedge"}}},
	}
	must(f.t, k8s.Create(ctx, p))
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	must(f.t, k8s.Status().Update(ctx, p))
	fp := newFakePod(f.t, token, conns)
	f.pods[name] = fp
	f.resolver.mu.Lock()
	f.resolver.m[name] = strings.TrimPrefix(fp.srv.URL, "http://")
	f.resolver.mu.Unlock()
	return fp
}

func (f *fixture) scaler(mod func(*wsedgev1.WSEdgeScalerSpec)) *wsedgev1.WSEdgeScaler {
	f.t.Helper()
	sc := &wsedgev1.WSEdgeScaler{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: f.ns},
		Spec: wsedgev1.WSEdgeScalerSpec{
			ScaleTargetRef:          wsedgev1.ScaleTargetRef{Name: "edge"},
			MinReplicas:             2,
			MaxReplicas:             8,
			TargetConnectionsPerPod: 100,
			AdminTokenSecretRef:     &wsedgev1.SecretKeyRef{Name: "admin"},
		},
	}
	if mod != nil {
		mod(&sc.Spec)
	}
	must(f.t, k8s.Create(context.Background(), sc))
	return sc
}

func (f *fixture) reconcile() {
	f.t.Helper()
	_, err := f.rec.Reconcile(context.Background(), reqFor(f.ns, "edge"))
	if err != nil {
		f.t.Fatalf("reconcile: %v", err)
	}
}

func (f *fixture) replicas() int32 {
	var d appsv1.Deployment
	must(f.t, k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "edge"}, &d))
	return *d.Spec.Replicas
}

func (f *fixture) status() wsedgev1.WSEdgeScalerStatus {
	var sc wsedgev1.WSEdgeScaler
	must(f.t, k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "edge"}, &sc))
	return sc.Status
}

// waitEvent waits until an Event with reason exists for the scaler (the
// broadcaster writes asynchronously).
func (f *fixture) waitEvent(reason string) string {
	f.t.Helper()
	cs := kubernetes.NewForConfigOrDie(cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := cs.EventsV1().Events(f.ns).List(context.Background(), metav1.ListOptions{})
		must(f.t, err)
		for _, e := range list.Items {
			if e.Reason == reason && e.Regarding.Kind == "WSEdgeScaler" {
				return e.Note
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no %s event in %s: %+v", reason, f.ns, list.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// roleClient is a client authenticated as a user bound only to the
// operator's generated ClusterRole (config/rbac/role.yaml) in ns: it proves
// the role is enough.
func roleClient(t *testing.T, ns string) client.Client {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	must(t, err)
	var role rbacv1.ClusterRole
	must(t, yaml.UnmarshalStrict(data, &role))
	role.Name = "wsedge-operator-" + ns
	ctx := context.Background()
	must(t, k8s.Create(ctx, &role))
	user := "operator-" + ns
	must(t, k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "operator", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: user}},
	}))
	u, err := testEnv.AddUser(envtest.User{Name: user}, nil)
	must(t, err)
	c, err := client.New(u.Config(), client.Options{Scheme: scheme})
	must(t, err)
	return c
}
