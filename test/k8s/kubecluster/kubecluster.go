// Package kubecluster starts a real Kubernetes control plane for tests:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
// (fake nodes whose pods "run" without containers), all built from source by
// hack/k8s-tools.sh. No Docker and no kind.
package kubecluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tools is the directory hack/k8s-tools.sh built (binaries, kwok stages, CRDs).
type Tools struct{ Dir string }

// FindTools runs hack/k8s-tools.sh, which only prints the directory when the
// binaries are already built (seconds) and builds them otherwise.
func FindTools(repoRoot string) (Tools, error) {
	cmd := exec.Command("bash", filepath.Join(repoRoot, "hack", "k8s-tools.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return Tools{}, fmt.Errorf("hack/k8s-tools.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return Tools{Dir: lines[len(lines)-1]}, nil
}

// Bin is the path of one built tool.
func (t Tools) Bin(name string) string { return filepath.Join(t.Dir, name) }

// Cluster is one running control plane. Its processes log to files in Dir.
type Cluster struct {
	Tools      Tools
	Dir        string // scratch: data, certificates, logs, kubeconfig
	Kubeconfig string
	Server     string // https://127.0.0.1:<port>
	token      string
	procs      []proc
	stopOnce   sync.Once
}

// Options says which parts beyond etcd and kube-apiserver to run.
type Options struct {
	// Nodes starts kube-controller-manager, kube-scheduler and kwok with one
	// fake node, so that Deployments get pods that become Running and Ready.
	Nodes bool
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start brings up a control plane in dir (which the caller removes). On error
// everything started so far is stopped.
func Start(ctx context.Context, tools Tools, dir string, opt Options) (c *Cluster, err error) {
	c = &Cluster{Tools: tools, Dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
			err = fmt.Errorf("%w\n%s", err, c.logTails())
		}
	}()
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c.token = hex.EncodeToString(tok)

	// Service-account signing key, the static admin token.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return c, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return c, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return c, err
	}

	ports := make([]int, 5) // etcd client, etcd peer, apiserver, kcm, scheduler
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return c, err
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := c.run("etcd", tools.Bin("etcd"),
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", ports[1]),
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return c, err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	certDir := filepath.Join(dir, "certs")
	if err := c.run("kube-apiserver", tools.Bin("kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]), "--cert-dir", certDir,
		// With one apiserver on loopback there is no endpoint to reconcile,
		// and the default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type", "none",
		"--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16"); err != nil {
		return c, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return c, err
	}
	if err := c.waitHTTP(ctx, c.Server+"/readyz", 90*time.Second); err != nil {
		return c, fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	if !opt.Nodes {
		return c, nil
	}
	if err := c.run("kube-controller-manager", tools.Bin("kube-controller-manager"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[3]),
		"--leader-elect=false", "--use-service-account-credentials=false",
		"--service-account-private-key-file", saKey, "--root-ca-file", filepath.Join(certDir, "apiserver.crt"),
		// No IPAM or volumes on fake nodes; node-lifecycle stays on: it
		// removes the not-ready taint once kwok reports the node ready.
		"--controllers", "*,-node-ipam-controller,-persistentvolume-attach-detach-controller"); err != nil {
		return c, err
	}
	if err := c.run("kube-scheduler", tools.Bin("kube-scheduler"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[4]), "--leader-elect=false"); err != nil {
		return c, err
	}
	if err := c.run("kwok", tools.Bin("kwok"),
		"--kubeconfig", c.Kubeconfig, "--config", tools.Bin("kwok-stages.yaml"),
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		// The heartbeat-with-lease stage renews the node's Lease only with a
		// lease duration; without one the node-lifecycle controller marks
		// the node NotReady after its grace period and rollouts stall.
		"--node-lease-duration-seconds=40"); err != nil {
		return c, err
	}
	node := `apiVersion: v1
kind: Node
metadata:
  name: fake-node-1
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: fake-node-1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-a
    type: kwok
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
`
	if _, err := c.Kubectl(ctx, node, "apply", "-f", "-"); err != nil {
		return c, err
	}
	if _, err := c.Kubectl(ctx, "", "wait", "--for=condition=Ready", "node/fake-node-1", "--timeout=60s"); err != nil {
		return c, err
	}
	// The default ServiceAccount appears once the controller manager runs;
	// pods of charts that do not make their own need it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := c.Kubectl(ctx, "", "get", "serviceaccount", "default", "-n", "default"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return c, errors.New("no default ServiceAccount after 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c, nil
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func (c *Cluster) run(name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := proc{cmd: cmd, done: make(chan struct{})}
	c.procs = append(c.procs, p)
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return nil
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	// The serving certificate is self-signed by kube-apiserver at start.
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
`, c.Server, c.token)
	return os.WriteFile(c.Kubeconfig, []byte(kc), 0o600)
}

func (c *Cluster) waitHTTP(ctx context.Context, url string, d time.Duration) error {
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the apiserver's self-signed cert
	}}
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("after %v: %w", d, last)
}

// Env is the environment for kubectl and helm: only this cluster, and a
// private Helm home so a developer's repositories and plugins play no part.
func (c *Cluster) Env() []string {
	home := filepath.Join(c.Dir, "helm")
	return append(os.Environ(), "KUBECONFIG="+c.Kubeconfig,
		"HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
}

// Kubectl runs kubectl against the cluster with stdin; the error carries
// the command's output.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return c.exec(ctx, c.Tools.Bin("kubectl"), stdin, args...)
}

// Helm runs the helm CLI against the cluster.
func (c *Cluster) Helm(ctx context.Context, args ...string) (string, error) {
	return c.exec(ctx, c.Tools.Bin("helm"), "", args...)
}

func (c *Cluster) exec(ctx context.Context, bin, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = c.Env()
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Stop ends every process (SIGTERM, then SIGKILL after 5 s).
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
}

// logTails returns the end of each process log, for failure messages.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		data, err := os.ReadFile(filepath.Join(c.Dir, name+".log"))
		if err != nil {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s.log (tail)\n%s\n", name, data)
	}
	return b.String()
}
