package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsedge/wsedge/test/k8s"
)

const chartDir = "../../../charts/wsedge"

// One control plane (with a fake node) for every test in this package; each
// test works in its own namespace.
var (
	cluster    *k8s.Cluster
	clusterErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		tools, err := k8s.FindTools("../../..")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		dir, err := os.MkdirTemp("", "wsedge-k8s-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		cluster, clusterErr = k8s.Start(ctx, tools, dir, k8s.Options{Nodes: true})
		if clusterErr != nil {
			fmt.Fprintln(os.Stderr, "control plane:", clusterErr)
			return 1
		}
		defer cluster.Stop()
		fmt.Fprintf(os.Stderr, "control plane with a fake node up in %v at %s\n", time.Since(start).Round(time.Millisecond), cluster.Server)
		if err := installCRDs(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// installCRDs installs the Gateway API HTTPRoute CRD (from the pinned
// sigs.k8s.io/gateway-api module), the monitoring CRDs and the chart's
// WSEdgeScaler CRD, so that the
// CRD-gated templates render and are validated by the server.
func installCRDs(ctx context.Context) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return fmt.Errorf("locate gateway-api module: %w", err)
	}
	gw := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml")
	// The chart's own CRD (crds/): the operator value sets render a WSEdgeScaler.
	for _, f := range []string{gw, "testdata/monitoring-crds.yaml", chartDir + "/crds/wsedge.io_wsedgescalers.yaml"} {
		if _, err := cluster.Kubectl(ctx, "", "apply", "--server-side", "-f", f); err != nil {
			return err
		}
	}
	_, err = cluster.Kubectl(ctx, "", "wait", "--for=condition=Established", "--timeout=60s",
		"crd/httproutes.gateway.networking.k8s.io", "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
		"crd/wsedgescalers.wsedge.io")
	return err
}

var nsSeq atomic.Int32

func namespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("t%d-%d", os.Getpid()%10000, nsSeq.Add(1))
	ctx := context.Background()
	if _, err := cluster.Kubectl(ctx, "", "create", "namespace", ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func writeValues(t *testing.T, values string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHelmLintStrict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, vs := range k8s.ValueSets {
		if _, err := cluster.Helm(ctx, "lint", "--strict", "--kube-version", strings.TrimPrefix(k8s.KubeVersion, "v"),
			"-f", writeValues(t, vs.Values), chartDir); err != nil {
			t.Errorf("%s: %v", vs.Name, err)
		}
	}
}

// Every rendered value set passes the real API server's validation with
// unknown fields rejected (`kubectl apply --dry-run=server --validate=strict`).
func TestServerDryRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, vs := range k8s.ValueSets {
		t.Run(vs.Name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			manifests, err := k8s.Render(chartDir, "rel", ns, vs.Values, vs.APIs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := cluster.Kubectl(ctx, strings.Join(manifests, "\n---\n"),
				"apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(manifests) {
				t.Errorf("%d objects accepted, rendered %d:\n%s", n, len(manifests), out)
			}
		})
	}
}

// A field the server does not know is refused: the dry run can fail.
func TestServerDryRunRejectsUnknownField(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	bad := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nbogus: 1\n"
	_, err := cluster.Kubectl(context.Background(), bad, "apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

// The README's Kubernetes steps, on the fake-node cluster: a Secret by
// reference, helm install --wait (Deployment Available), a config change
// rolled out by helm upgrade with maxUnavailable 0, and helm uninstall
// leaving nothing behind.
func TestInstallUpgradeUninstall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cluster.Kubectl(ctx, stdin, append(args, "-n", ns)...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	// README step: the secrets, created outside the chart.
	kubectl("", "create", "secret", "generic", "wsedge-secrets",
		"--from-literal=SECRET_KEY=0123456789abcdef0123456789abcdef",
		"--from-literal=REDIS_URL=redis://:password@redis.example.internal:6379/0")
	values := writeValues(t, readmeValues(t))
	if _, err := cluster.Helm(ctx, "install", "wsedge", chartDir, "-n", ns, "-f", values, "--wait", "--timeout", "3m"); err != nil {
		t.Fatal(err)
	}
	avail := kubectl("", "get", "deployment", "wsedge", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.readyReplicas}`)
	if avail != "True 3" {
		t.Fatalf("after install: Available/ready = %q", avail)
	}
	rs1 := kubectl("", "get", "rs", "-l", "app.kubernetes.io/instance=wsedge", "-o", "jsonpath={.items[*].metadata.name}")

	// Upgrade with a config change: the checksum rolls the pods; watch that
	// availability never drops below 3 (maxUnavailable: 0).
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, upErr = cluster.Helm(ctx, "upgrade", "wsedge", chartDir, "-n", ns, "-f", values,
			"--set", "config.logLevel=debug", "--wait", "--timeout", "3m")
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	minAvail, surged := 3, false
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
		}
		out, err := cluster.Kubectl(ctx, "", "get", "deployment", "wsedge", "-n", ns, "-o", "jsonpath={.status.availableReplicas} {.status.replicas}")
		if err == nil {
			f := strings.Fields(out)
			if len(f) == 2 {
				a, _ := strconv.Atoi(f[0])
				r, _ := strconv.Atoi(f[1])
				minAvail = min(minAvail, a)
				surged = surged || r > 3
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if upErr != nil {
		state, _ := cluster.Kubectl(ctx, "", "get", "deploy,rs,pods,events", "-n", ns, "-o", "wide")
		t.Fatalf("%v\n%s", upErr, state)
	}
	if minAvail < 3 {
		t.Errorf("available replicas fell to %d during the rollout (maxUnavailable is 0)", minAvail)
	}
	if !surged {
		t.Log("no surge observed between polls (the rollout may have been faster than the poll)")
	}
	rs := kubectl("", "get", "rs", "-l", "app.kubernetes.io/instance=wsedge", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.replicas} {end}`)
	var newRS []string
	for _, kv := range strings.Fields(rs) {
		name, n, _ := strings.Cut(kv, "=")
		if strings.Contains(rs1, name) {
			if n != "0" {
				t.Errorf("old ReplicaSet %s still has %s pods", name, n)
			}
		} else {
			newRS = append(newRS, name+"="+n)
		}
	}
	if len(newRS) != 1 || !strings.HasSuffix(newRS[0], "=3") {
		t.Errorf("after upgrade: new ReplicaSets %v (all: %s)", newRS, rs)
	}
	if lvl := kubectl("", "get", "configmap", "wsedge", "-o", "jsonpath={.data.LOG_LEVEL}"); lvl != "debug" {
		t.Errorf("LOG_LEVEL after upgrade %q", lvl)
	}
	if rev := kubectl("", "get", "secret", "-l", "owner=helm,name=wsedge", "-o", "jsonpath={.items[*].metadata.labels.version}"); !strings.Contains(rev, "2") {
		t.Errorf("release revisions %q", rev)
	}

	// Uninstall: nothing of the release is left, pods included.
	if _, err := cluster.Helm(ctx, "uninstall", "wsedge", "-n", ns, "--wait", "--timeout", "2m"); err != nil {
		t.Fatal(err)
	}
	kinds := "deployments,replicasets,pods,services,configmaps,serviceaccounts,poddisruptionbudgets,ingresses,horizontalpodautoscalers"
	deadline := time.Now().Add(90 * time.Second)
	for {
		left := kubectl("", "get", kinds, "-l", "app.kubernetes.io/instance=wsedge", "-o", "name")
		helmSecrets := kubectl("", "get", "secrets", "-l", "owner=helm", "-o", "name")
		if left == "" && helmSecrets == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after uninstall:\n%s\n%s", left, helmSecrets)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Only what the user created remains.
	if s := kubectl("", "get", "secrets", "-o", "name"); s != "secret/wsedge-secrets" {
		t.Errorf("secrets left: %q", s)
	}
}

// readmeValues is the values-eks.yaml of the README's Kubernetes steps, so
// that the test installs what the README tells users to install.
func readmeValues(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "`values-eks.yaml`:\n")
	if !ok {
		t.Fatal("README: no values-eks.yaml step")
	}
	_, after, ok = strings.Cut(after, "```yaml\n")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("README: no yaml block after values-eks.yaml")
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "   ")) // the list item's indentation
	}
	return strings.Join(lines, "\n")
}

// `helm install` refuses bad values with the schema's (or the chart's) message.
func TestHelmInstallRejectsBadValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	for _, tc := range k8s.BadValues {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := cluster.Helm(ctx, "install", "bad", chartDir, "-n", ns, "-f", writeValues(t, tc.Values))
			if err == nil {
				t.Fatal("installed")
			}
			for _, w := range tc.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if out, err := cluster.Kubectl(ctx, "", "get", "secrets", "-l", "owner=helm", "-n", ns, "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("releases left by refused installs: %q %v", out, err)
	}
}
