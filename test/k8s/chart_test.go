package k8s

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
)

const chartDir = "../../charts/wsedge"

var checks = map[string]func(t *testing.T, r rendered){
	"debug defaults": func(t *testing.T, r rendered) {
		r.wantKinds(t, "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount")
		d := r.deployment(t)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("replicas %v", d.Spec.Replicas)
		}
		if r.configMap(t)["DEBUG"] != "1" {
			t.Error("DEBUG not 1")
		}
	},
	"production, one replica": func(t *testing.T, r rendered) {
		d := r.deployment(t)
		c := d.Spec.Template.Spec.Containers[0]
		env := map[string]*corev1.EnvVarSource{}
		for _, e := range c.Env {
			env[e.Name] = e.ValueFrom
		}
		for name, optional := range map[string]bool{"SECRET_KEY": false, "AUTH_API_KEY": true, "CSRF_SECRET_KEY": true, "DATABASE_URL": true} {
			ref := env[name]
			if ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "wsedge-secrets" || ref.SecretKeyRef.Key != name {
				t.Errorf("%s not from the Secret: %+v", name, ref)
				continue
			}
			if got := ref.SecretKeyRef.Optional != nil && *ref.SecretKeyRef.Optional; got != optional {
				t.Errorf("%s optional=%v, want %v", name, got, optional)
			}
		}
		cm := r.configMap(t)
		for _, secret := range []string{"SECRET_KEY", "AUTH_API_KEY", "DATABASE_URL", "REDIS_URL"} {
			if _, ok := cm[secret]; ok {
				t.Errorf("%s in the ConfigMap", secret)
			}
		}
		if cm["DEBUG"] != "0" || cm["ALLOWED_HOSTS"] != "app.example.com" || cm["ADMIN_ADDR"] != "0.0.0.0:9090" {
			t.Errorf("config map %v", cm)
		}
		// Probes: readiness on /ready/ (fails when full or draining),
		// liveness and startup on /live/ (200 while draining).
		if p := c.ReadinessProbe; p == nil || p.HTTPGet.Path != "/ready/" {
			t.Errorf("readiness %+v", p)
		}
		if p := c.LivenessProbe; p == nil || p.HTTPGet.Path != "/live/" {
			t.Errorf("liveness %+v", p)
		}
		if p := c.StartupProbe; p == nil || p.HTTPGet.Path != "/live/" {
			t.Errorf("startup %+v", p)
		}
		// Security: non-root, read-only root, no capabilities.
		ps := d.Spec.Template.Spec.SecurityContext
		sc := c.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || *ps.RunAsUser != 65532 ||
			sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("security context pod %+v container %+v", ps, sc)
		}
		// Rolling update never lowers capacity.
		ru := d.Spec.Strategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.String() != "25%" || d.Spec.MinReadySeconds != 10 {
			t.Errorf("strategy %+v minReady %d", ru, d.Spec.MinReadySeconds)
		}
		if len(d.Spec.Template.Spec.TopologySpreadConstraints) != 2 ||
			d.Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels["app.kubernetes.io/instance"] != "rel" {
			t.Errorf("topology spread %+v", d.Spec.Template.Spec.TopologySpreadConstraints)
		}
		admin := r.service(t, "rel-wsedge-admin")
		if admin.Spec.Type != corev1.ServiceTypeClusterIP || admin.Spec.Ports[0].Port != 9090 {
			t.Errorf("admin service %+v", admin.Spec)
		}
		if pub := r.service(t, "rel-wsedge"); len(pub.Spec.Ports) != 1 || pub.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("public service exposes %+v", pub.Spec.Ports)
		}
	},
	"ALB, Redis, 3 replicas, drain 120s": func(t *testing.T, r rendered) {
		d := r.deployment(t)
		// One value, three consumers.
		if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 7+120+10 {
			t.Errorf("grace %d", g)
		}
		cm := r.configMap(t)
		if cm["DRAIN_TIMEOUT"] != "120s" || cm["DRAIN_SPREAD"] != "30s" || cm["HTTP_IDLE_TIMEOUT"] != "3615s" {
			t.Errorf("drain config %v", cm)
		}
		if ps := d.Spec.Template.Spec.Containers[0].Lifecycle.PreStop; ps == nil || ps.Sleep == nil || ps.Sleep.Seconds != 7 {
			t.Errorf("preStop %+v", ps)
		}
		ing := r.ingress(t)
		a := ing.Annotations
		for k, v := range map[string]string{
			"alb.ingress.kubernetes.io/target-type":              "ip",
			"alb.ingress.kubernetes.io/healthcheck-path":         "/health/",
			"alb.ingress.kubernetes.io/load-balancer-attributes": "idle_timeout.timeout_seconds=3600",
			"alb.ingress.kubernetes.io/target-group-attributes":  "deregistration_delay.timeout_seconds=137,stickiness.enabled=false,slow_start.duration_seconds=60",
			"alb.ingress.kubernetes.io/ssl-redirect":             "443",
			"alb.ingress.kubernetes.io/wafv2-acl-arn":            "arn:aws:wafv2:x",
		} {
			if a[k] != v {
				t.Errorf("annotation %s = %q, want %q", k, a[k], v)
			}
		}
		if *ing.Spec.IngressClassName != "alb" || ing.Spec.Rules[0].Host != "app.example.com" {
			t.Errorf("ingress spec %+v", ing.Spec)
		}
		var redis *corev1.EnvVarSource
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "REDIS_URL" {
				redis = e.ValueFrom
			}
		}
		if redis == nil || redis.SecretKeyRef.Name != "redis-creds" || redis.SecretKeyRef.Key != "REDIS_URL" {
			t.Errorf("REDIS_URL %+v", redis)
		}
		if *d.Spec.Replicas != 3 {
			t.Errorf("replicas %d", *d.Spec.Replicas)
		}
	},
	"HPA on CPU and connections": func(t *testing.T, r rendered) {
		h := r.hpa(t)
		if h == nil {
			t.Fatal("no HPA")
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 20 || len(h.Spec.Metrics) != 2 ||
			h.Spec.Metrics[1].Pods.Metric.Name != "wsedge_connections" || h.Spec.Metrics[1].Pods.Target.AverageValue.Value() != 20000 {
			t.Errorf("hpa %+v", h.Spec)
		}
		if w := h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds; w == nil || *w != 1800 {
			t.Errorf("scale-down window %v", w)
		}
		if r.deployment(t).Spec.Replicas != nil {
			t.Error("Deployment sets replicas while the HPA owns them")
		}
		if r.configMap(t)["REDIS_URL"] != "redis://redis.default.svc:6379/0" {
			t.Error("redis.url not in the ConfigMap")
		}
	},
	"operator manages replicas": func(t *testing.T, r rendered) {
		if r.hpa(t) != nil {
			t.Error("HPA rendered with the operator")
		}
		if r.deployment(t).Spec.Replicas != nil {
			t.Error("replicas set with the operator")
		}
		sc := checkOperator(t, r, "wsedge-admin", "token", 9090)
		s := sc.Spec
		if s.MinReplicas != 2 || s.MaxReplicas != 10 || s.TargetConnectionsPerPod != 5000 || s.TargetMemoryBytesPerPod != nil ||
			*s.ScaleDown.StabilizationWindowSeconds != 300 || *s.ScaleDown.MaxPods != 1 || *s.ScaleUp.MaxPods != 4 ||
			!*s.Rebalance.Enabled || s.Rebalance.MaxEvictionsPerSecond != 50 || s.Drain.SpreadSeconds != 10 || s.SyncPeriodSeconds != 15 {
			t.Errorf("scaler spec from defaults %+v", s)
		}
		if img := must[*appsv1.Deployment](t, r, "rel-wsedge-operator").Spec.Template.Spec.Containers[0].Image; img != "wsedge-operator:0.1.0" {
			t.Errorf("operator image %q", img)
		}
	},
	"operator tuned": func(t *testing.T, r rendered) {
		sc := checkOperator(t, r, "edge-admin", "ADMIN_TOKEN", 9191)
		s := sc.Spec
		if s.MinReplicas != 3 || s.MaxReplicas != 40 || s.TargetConnectionsPerPod != 20000 || *s.TargetMemoryBytesPerPod != 3221225472 ||
			*s.ScaleDown.StabilizationWindowSeconds != 900 || *s.ScaleDown.MaxPods != 2 || *s.ScaleDown.PeriodSeconds != 600 ||
			s.Rebalance.ThresholdPercent != 15 || s.Rebalance.MaxEvictionsPerSecond != 200 || s.Rebalance.MaxPercentPerRound != 5 ||
			s.Drain.SpreadSeconds != 30 || s.Drain.JitterSeconds != 10 {
			t.Errorf("scaler spec %+v", s)
		}
		d := must[*appsv1.Deployment](t, r, "rel-wsedge-operator")
		if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Image !=
			"registry.example.com/wsedge-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
			t.Errorf("operator deployment replicas %d image %q", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
		}
	},
	"Gateway API, IRSA, PDB minAvailable, digest": func(t *testing.T, r rendered) {
		var route *gatewayv1.HTTPRoute
		var sa *corev1.ServiceAccount
		var pdb *policyv1.PodDisruptionBudget
		for _, o := range r.objs {
			switch v := o.(type) {
			case *gatewayv1.HTTPRoute:
				route = v
			case *corev1.ServiceAccount:
				sa = v
			case *policyv1.PodDisruptionBudget:
				pdb = v
			}
		}
		if route == nil || string(route.Spec.ParentRefs[0].Name) != "public" || string(route.Spec.Rules[0].BackendRefs[0].Name) != "rel-wsedge" {
			t.Errorf("route %+v", route)
		}
		if sa == nil || sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
			t.Errorf("service account %+v", sa)
		}
		if pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
			t.Errorf("pdb %+v", pdb)
		}
		if img := r.deployment(t).Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, "/wsedge@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
			t.Errorf("image %s", img)
		}
	},
	"monitoring CRDs present": func(t *testing.T, r rendered) {
		var sm *monitoringv1.ServiceMonitor
		var pr *monitoringv1.PrometheusRule
		dash := false
		for _, o := range r.objs {
			switch v := o.(type) {
			case *monitoringv1.ServiceMonitor:
				sm = v
			case *monitoringv1.PrometheusRule:
				pr = v
			case *corev1.ConfigMap:
				if v.Labels["grafana_dashboard"] == "1" && v.Data["wsedge.json"] != "" {
					dash = true
				}
			}
		}
		if sm == nil || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "admin" {
			t.Errorf("service monitor %+v", sm)
		}
		if pr == nil {
			t.Fatal("no PrometheusRule")
		}
		var alerts []string
		for _, rule := range pr.Spec.Groups[0].Rules {
			alerts = append(alerts, rule.Alert)
			if !strings.Contains(rule.Expr.String(), `namespace="ns", pod=~"rel-wsedge-.*"`) {
				t.Errorf("%s not scoped to the release: %s", rule.Alert, rule.Expr.String())
			}
		}
		want := []string{"WsedgeNearMaxConnections", "WsedgeRefusingConnections", "WsedgeSlowConsumerCloses", "WsedgeRedisErrors", "WsedgeDrainStuck"}
		if !slices.Equal(alerts, want) {
			t.Errorf("alerts %v, want %v", alerts, want)
		}
		if !dash {
			t.Error("no dashboard ConfigMap")
		}
	},
	"monitoring CRDs absent": func(t *testing.T, r rendered) {
		for _, k := range Kinds(r.objs) {
			if strings.HasPrefix(k, "ServiceMonitor/") || strings.HasPrefix(k, "PrometheusRule/") {
				t.Errorf("%s rendered without its CRD", k)
			}
		}
	},
}

type rendered struct {
	manifests []string
	objs      []runtime.Object
}

func (r rendered) wantKinds(t *testing.T, kinds ...string) {
	t.Helper()
	var got []string
	for _, k := range Kinds(r.objs) {
		got = append(got, strings.SplitN(k, "/", 2)[0])
	}
	if !slices.Equal(got, kinds) {
		t.Errorf("kinds %v, want %v", got, kinds)
	}
}

// object returns the rendered object of type T named name ("": the first).
func object[T interface {
	runtime.Object
	GetName() string
}](r rendered, name string) (T, bool) {
	for _, o := range r.objs {
		if v, ok := o.(T); ok && (name == "" || v.GetName() == name) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// must is object for objects a check cannot go on without.
func must[T interface {
	runtime.Object
	GetName() string
}](t *testing.T, r rendered, name string) T {
	t.Helper()
	v, ok := object[T](r, name)
	if !ok {
		t.Fatalf("no %T %q rendered; have %v", v, name, Kinds(r.objs))
	}
	return v
}

func (r rendered) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	return must[*appsv1.Deployment](t, r, "")
}

func (r rendered) configMap(t *testing.T) map[string]string {
	t.Helper()
	return must[*corev1.ConfigMap](t, r, "rel-wsedge").Data
}

func (r rendered) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	return must[*corev1.Service](t, r, name)
}

func (r rendered) ingress(t *testing.T) *networkingv1.Ingress {
	t.Helper()
	return must[*networkingv1.Ingress](t, r, "")
}

func (r rendered) hpa(*testing.T) *autoscalingv2.HorizontalPodAutoscaler {
	h, _ := object[*autoscalingv2.HorizontalPodAutoscaler](r, "")
	return h
}

func render(t *testing.T, vs ValueSet) rendered {
	t.Helper()
	manifests, err := Render(chartDir, "rel", "ns", vs.Values, vs.APIs)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs, err := DecodeStrict(Scheme(), manifests)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{manifests, objs}
}

// Every value set renders, and every object decodes strictly into its typed
// Kubernetes struct (an unknown or misplaced field fails).
func TestRender(t *testing.T) {
	t.Parallel()
	for _, vs := range ValueSets {
		t.Run(vs.Name, func(t *testing.T) {
			t.Parallel()
			check := checks[vs.Name]
			if check == nil {
				t.Fatalf("no checks for %q", vs.Name)
			}
			check(t, render(t, vs))
		})
	}
}

// A config change changes the pod template (checksum/config), so pods roll;
// a change elsewhere does not.
func TestConfigChecksum(t *testing.T) {
	t.Parallel()
	sum := func(values string) string {
		d := render(t, ValueSet{Values: values}).deployment(t)
		return d.Spec.Template.Annotations["checksum/config"]
	}
	base := sum(Prod)
	if base == "" {
		t.Fatal("no checksum/config")
	}
	if sum(Secrets+"config: {allowedHosts: app.example.com, logLevel: debug}\n") == base {
		t.Error("config change kept the checksum")
	}
	if sum(Prod+"\nservice: {port: 8080}\n") != base {
		t.Error("a non-config change moved the checksum")
	}
}

// Bad values fail at install with a message that says what is wrong.
func TestBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range BadValues {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(chartDir, "rel", "ns", tc.Values, nil)
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tc.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// checkOperator checks what every operator install renders: the scaler for
// this release's Deployment with the token reference, the token mounted into
// the wsedge pods, the operator's namespaced RBAC (the generated role's
// rules, secrets narrowed to the token), and its Deployment's flags.
func checkOperator(t *testing.T, r rendered, secret, key string, port int32) *wsedgev1.WSEdgeScaler {
	t.Helper()
	sc := must[*wsedgev1.WSEdgeScaler](t, r, "rel-wsedge")
	if sc.Spec.ScaleTargetRef != (wsedgev1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "rel-wsedge"}) ||
		sc.Spec.AdminTokenSecretRef == nil || *sc.Spec.AdminTokenSecretRef != (wsedgev1.SecretKeyRef{Name: secret, Key: key}) ||
		sc.Spec.AdminPort != port {
		t.Errorf("scaler %+v", sc.Spec)
	}
	pod := r.deployment(t).Spec.Template.Spec
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == "admin-token" {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secret || len(vol.Secret.Items) != 1 ||
		vol.Secret.Items[0] != (corev1.KeyToPath{Key: key, Path: "token"}) {
		t.Errorf("admin token volume %+v", vol)
	}
	c := pod.Containers[0]
	mounted, env := false, ""
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.Name == "admin-token" && m.MountPath == "/var/run/wsedge-admin" && m.ReadOnly)
	}
	for _, e := range c.Env {
		if e.Name == "ADMIN_TOKEN_FILE" {
			env = e.Value
		}
	}
	if !mounted || env != "/var/run/wsedge-admin/token" {
		t.Errorf("token mount %v, ADMIN_TOKEN_FILE %q", mounted, env)
	}

	// The Role grants what the controller's generated ClusterRole lists
	// (operator/config/rbac/role.yaml), secrets only by name.
	data, err := os.ReadFile("../../operator/config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var gen rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &gen); err != nil {
		t.Fatal(err)
	}
	role := must[*rbacv1.Role](t, r, "rel-wsedge-operator")
	want := gen.Rules
	for i := range want {
		if slices.Contains(want[i].Resources, "secrets") {
			want[i].ResourceNames = []string{secret}
		}
	}
	norm := func(rs []rbacv1.PolicyRule) []string {
		var out []string
		for _, r := range rs {
			v := slices.Clone(r.Verbs)
			slices.Sort(v)
			out = append(out, fmt.Sprint(r.APIGroups, r.Resources, r.ResourceNames, v))
		}
		slices.Sort(out)
		return out
	}
	if got, w := norm(role.Rules), norm(want); !slices.Equal(got, w) {
		t.Errorf("operator Role rules\n got %v\nwant %v", got, w)
	}
	le := must[*rbacv1.Role](t, r, "rel-wsedge-operator-leader-election")
	if len(le.Rules) == 0 || le.Rules[0].Resources[0] != "leases" {
		t.Errorf("leader election role %+v", le.Rules)
	}
	for _, name := range []string{"rel-wsedge-operator", "rel-wsedge-operator-leader-election"} {
		b := must[*rbacv1.RoleBinding](t, r, name)
		if b.RoleRef.Name != name || b.Subjects[0].Name != "rel-wsedge-operator" || b.Subjects[0].Namespace != "ns" {
			t.Errorf("binding %s %+v", name, b)
		}
	}
	must[*corev1.ServiceAccount](t, r, "rel-wsedge-operator")
	op := must[*appsv1.Deployment](t, r, "rel-wsedge-operator")
	args := strings.Join(op.Spec.Template.Spec.Containers[0].Args, " ")
	for _, a := range []string{"--namespace=ns", "--scaler=rel-wsedge", "--leader-elect=true", "--leader-election-id=rel-wsedge-operator"} {
		if !strings.Contains(args, a) {
			t.Errorf("operator args %q lack %q", args, a)
		}
	}
	if op.Spec.Template.Spec.ServiceAccountName != "rel-wsedge-operator" {
		t.Errorf("operator service account %q", op.Spec.Template.Spec.ServiceAccountName)
	}
	return sc
}

// Without the operator nothing of it is rendered and the pods mount no token.
func TestNoOperatorByDefault(t *testing.T) {
	t.Parallel()
	r := render(t, ValueSet{Values: Prod})
	for _, k := range Kinds(r.objs) {
		if strings.Contains(k, "operator") || strings.HasPrefix(k, "WSEdgeScaler/") || strings.HasPrefix(k, "Role") {
			t.Errorf("%s rendered without operator.enabled", k)
		}
	}
	if strings.Contains(strings.Join(r.manifests, ""), "ADMIN_TOKEN_FILE") {
		t.Error("ADMIN_TOKEN_FILE without the operator")
	}
}

// The chart ships the CRD that controller-gen generated for the operator,
// byte for byte.
func TestChartCRDIsGenerated(t *testing.T) {
	t.Parallel()
	a, err := os.ReadFile("../../operator/config/crd/bases/wsedge.io_wsedgescalers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chartDir + "/crds/wsedge.io_wsedgescalers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("charts/wsedge/crds/wsedge.io_wsedgescalers.yaml differs from operator/config/crd/bases: copy it after `make -C operator generate`")
	}
}

func ExampleKinds() {
	objs, err := DecodeStrict(Scheme(), []string{"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"})
	fmt.Println(Kinds(objs), err)
	// Output: [Service/a] <nil>
}
