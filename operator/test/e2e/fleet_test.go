package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// proc is the real wsedge process standing in for one fake (kwok) pod.
type proc struct {
	pod     string
	httpA   string // ws:// address
	adminA  string
	cmd     *exec.Cmd
	started time.Time
	up      chan struct{} // closed once /live/ answers
	done    chan struct{} // closed when the process has exited
	termAt  time.Time     // SIGTERM sent (zero: not yet)
	exitErr error
}

// fleet plays kubelet for the namespace's pods: a pod bound to the fake
// node gets a wsedge process; a pod deleted (or terminating) gets SIGTERM,
// as kubelet would send it. It is also the operator's Resolver and the
// test's Service (a random choice among serving pods, like kube-proxy).
type fleet struct {
	env *env
	ns  string
	sel map[string]string
	dir string

	mu    sync.Mutex
	procs map[string]*proc
	rng   *rand.Rand
	errs  []error
}

func newFleet(e *env, ns string, sel map[string]string, dir string, seed uint64) *fleet {
	return &fleet{env: e, ns: ns, sel: sel, dir: dir, procs: map[string]*proc{}, rng: rand.New(rand.NewPCG(seed, 1))}
}

// run reconciles pods to processes every 100 ms until ctx ends, then
// stops every process.
func (f *fleet) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var pods corev1.PodList
		if err := f.env.c.List(ctx, &pods, client.InNamespace(f.ns), client.MatchingLabels(f.sel)); err == nil {
			f.sync(pods.Items)
		}
		select {
		case <-ctx.Done():
			f.stopAll()
			return
		case <-tick.C:
		}
	}
}

func (f *fleet) sync(pods []corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		seen[p.Name] = true
		pr := f.procs[p.Name]
		switch {
		case pr == nil && p.DeletionTimestamp == nil && p.Spec.NodeName != "":
			pr, err := f.start(p.Name)
			if err != nil {
				f.errs = append(f.errs, err)
				continue
			}
			f.procs[p.Name] = pr
		case pr != nil && p.DeletionTimestamp != nil:
			f.term(pr)
		}
	}
	for name, pr := range f.procs {
		if !seen[name] {
			f.term(pr)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs wsedge for pod: its own ports, Redis shared by all, session
// history on (lossless resume), the drain of a deleted pod spread over 2 s
// with reconnect hints of up to 1 s.
func (f *fleet) start(pod string) (*proc, error) {
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	ap, err := freePort()
	if err != nil {
		return nil, err
	}
	pr := &proc{pod: pod, httpA: "127.0.0.1:" + strconv.Itoa(hp), adminA: "127.0.0.1:" + strconv.Itoa(ap),
		up: make(chan struct{}), done: make(chan struct{}), started: time.Now()}
	dir := filepath.Join(f.dir, pod)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "wsedge.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(f.env.wsedge)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DEBUG=1", "LOG_FORMAT=text", "LOG_LEVEL=warn",
		"ADDR=" + pr.httpA, "ADMIN_ADDR=" + pr.adminA, "INSTANCE_ID=" + pod,
		"ADMIN_TOKEN_FILE=" + f.env.tokenFile,
		"REDIS_URL=redis://" + f.env.redis + "/0",
		"SESSION_HISTORY_SIZE=50000",
		"DRAIN_SPREAD=2s", "DRAIN_TIMEOUT=15s", "RECONNECT_JITTER=1s",
		"PING_INTERVAL=60s", "PONG_TIMEOUT=60s", "EVENT_LOOPS=1",
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start wsedge for %s: %w", pod, err)
	}
	pr.cmd = cmd
	go func() {
		pr.exitErr = cmd.Wait()
		logf.Close()
		close(pr.done)
	}()
	go func() {
		hc := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-pr.done:
				return
			default:
			}
			if resp, err := hc.Get("http://" + pr.httpA + "/live/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					close(pr.up)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return pr, nil
}

// term sends SIGTERM once.
func (f *fleet) term(pr *proc) {
	if !pr.termAt.IsZero() {
		return
	}
	pr.termAt = time.Now()
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	var all []*proc
	for _, pr := range f.procs {
		f.term(pr)
		all = append(all, pr)
	}
	f.mu.Unlock()
	for _, pr := range all {
		select {
		case <-pr.done:
		case <-time.After(20 * time.Second):
			_ = pr.cmd.Process.Kill()
			<-pr.done
		}
	}
}

// Resolve maps a fake pod to its process's admin listener (the operator's
// podapi.Resolver).
func (f *fleet) Resolve(pod *corev1.Pod, _ int32) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pr := f.procs[pod.Name]
	if pr == nil {
		return "", fmt.Errorf("pod %s has no process", pod.Name)
	}
	return pr.adminA, nil
}

// choose is the Service: a random process that is up and not terminating.
func (f *fleet) choose() (addr, pod string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var live []*proc
	for _, pr := range f.procs {
		select {
		case <-pr.up:
			if pr.termAt.IsZero() {
				live = append(live, pr)
			}
		default:
		}
	}
	if len(live) == 0 {
		return "", "", false
	}
	sort.Slice(live, func(i, j int) bool { return live[i].pod < live[j].pod })
	pr := live[f.rng.IntN(len(live))]
	return pr.httpA, pr.pod, true
}

// serving lists the processes that are up and not terminating.
func (f *fleet) serving() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*proc
	for _, pr := range f.procs {
		select {
		case <-pr.up:
			if pr.termAt.IsZero() {
				out = append(out, pr)
			}
		default:
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pod < out[j].pod })
	return out
}

// exited lists pods whose process was terminated and has exited.
func (f *fleet) exited() map[string]error {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]error{}
	for name, pr := range f.procs {
		select {
		case <-pr.done:
			out[name] = pr.exitErr
		default:
		}
	}
	return out
}

func (f *fleet) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// status reads one process's /admin/status with the token.
func (f *fleet) status(pr *proc) (adminStatus, error) {
	var st adminStatus
	req, _ := http.NewRequest(http.MethodGet, "http://"+pr.adminA+"/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+f.env.token)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: HTTP %d", pr.pod, resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

type adminStatus struct {
	Instance    string `json:"instance"`
	Connections int64  `json:"connections"`
	Draining    bool   `json:"draining"`
	Shedding    int64  `json:"shedding"`
}
