package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
)

func reqFor(ns, name string) ctrl.Request {
	return ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
}

// The CRD's schema defaults what is left out and refuses what is invalid,
// on a real API server.
func TestCRDDefaultsAndValidation(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	minimal := func() *wsedgev1.WSEdgeScaler {
		return &wsedgev1.WSEdgeScaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "s-"},
			Spec: wsedgev1.WSEdgeScalerSpec{ScaleTargetRef: wsedgev1.ScaleTargetRef{Name: "edge"},
				MaxReplicas: 10, TargetConnectionsPerPod: 5000},
		}
	}
	sc := minimal()
	must(t, k8s.Create(ctx, sc))
	s := sc.Spec
	if s.MinReplicas != 2 || s.AdminPort != 9090 || s.SyncPeriodSeconds != 15 ||
		s.ScaleTargetRef.APIVersion != "apps/v1" || s.ScaleTargetRef.Kind != "Deployment" ||
		s.Rebalance.Enabled == nil || !*s.Rebalance.Enabled || s.Rebalance.ThresholdPercent != 20 ||
		s.Rebalance.MaxEvictionsPerSecond != 50 || s.Rebalance.MaxPercentPerRound != 10 ||
		s.Drain.SpreadSeconds != 10 || s.Drain.JitterSeconds != 5 ||
		*s.ScaleUp.StabilizationWindowSeconds != 0 || *s.ScaleUp.MaxPods != 4 || *s.ScaleUp.PeriodSeconds != 60 ||
		*s.ScaleDown.StabilizationWindowSeconds != 300 || *s.ScaleDown.MaxPods != 1 || *s.ScaleDown.PeriodSeconds != 300 {
		t.Fatalf("defaults not applied: %+v", s)
	}
	if p := PolicyFrom(s); p.Min != 2 || p.Max != 10 || p.Target != 5000 || p.DownWindow != 300*time.Second || !p.Rebalance {
		t.Fatalf("policy from defaulted spec: %+v", p)
	}

	tests := []struct {
		name string
		mod  func(*wsedgev1.WSEdgeScaler)
		want string
	}{
		{"min above max", func(s *wsedgev1.WSEdgeScaler) { s.Spec.MinReplicas = 11 }, "minReplicas must not exceed maxReplicas"},
		{"zero target", func(s *wsedgev1.WSEdgeScaler) { s.Spec.TargetConnectionsPerPod = 0 }, "targetConnectionsPerPod"},
		{"no max", func(s *wsedgev1.WSEdgeScaler) { s.Spec.MaxReplicas = 0 }, "maxReplicas"},
		{"not a deployment", func(s *wsedgev1.WSEdgeScaler) { s.Spec.ScaleTargetRef.Kind = "StatefulSet" }, "scaleTargetRef.kind"},
		{"no target name", func(s *wsedgev1.WSEdgeScaler) { s.Spec.ScaleTargetRef.Name = "" }, "scaleTargetRef.name"},
		{"whole pod per round", func(s *wsedgev1.WSEdgeScaler) { s.Spec.Rebalance.MaxPercentPerRound = 100 }, "maxPercentPerRound"},
		{"no eviction rate", func(s *wsedgev1.WSEdgeScaler) { s.Spec.Rebalance.MaxEvictionsPerSecond = -1 }, "maxEvictionsPerSecond"},
		{"port out of range", func(s *wsedgev1.WSEdgeScaler) { s.Spec.AdminPort = 70000 }, "adminPort"},
		{"zero step", func(s *wsedgev1.WSEdgeScaler) { s.Spec.ScaleDown = &wsedgev1.ScalingRules{MaxPods: ptr.To[int32](0)} }, "scaleDown.maxPods"},
		{"negative window", func(s *wsedgev1.WSEdgeScaler) {
			s.Spec.ScaleUp = &wsedgev1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](-1)}
		},
			"scaleUp.stabilizationWindowSeconds"},
		{"zero memory target", func(s *wsedgev1.WSEdgeScaler) { s.Spec.TargetMemoryBytesPerPod = ptr.To[int64](0) }, "targetMemoryBytesPerPod"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := minimal()
			tc.mod(sc)
			err := k8s.Create(ctx, sc)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want Invalid mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("unknown field", func(t *testing.T) {
		u := &unstructured.Unstructured{}
		must(t, json.Unmarshal([]byte(`{"apiVersion":"wsedge.io/v1alpha1","kind":"WSEdgeScaler",
			"metadata":{"generateName":"s-","namespace":"`+ns+`"},
			"spec":{"scaleTargetRef":{"name":"edge"},"maxReplicas":3,"targetConnectionsPerPod":10,"targetCPU":60}}`), &u.Object))
		err := client.WithFieldValidation(k8s, client.FieldValidation(metav1.FieldValidationStrict)).Create(ctx, u)
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.targetCPU"`) {
			t.Fatalf("got %v, want unknown field", err)
		}
	})
}

// Status is a subresource: spec writes do not change it and status writes
// do not change the spec or the generation.
func TestStatusSubresource(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	sc := &wsedgev1.WSEdgeScaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s"},
		Spec: wsedgev1.WSEdgeScalerSpec{ScaleTargetRef: wsedgev1.ScaleTargetRef{Name: "edge"}, MaxReplicas: 4, TargetConnectionsPerPod: 10}}
	must(t, k8s.Create(ctx, sc))
	gen := sc.Generation
	sc.Status.DesiredReplicas = 3
	sc.Status.TotalConnections = 42
	must(t, k8s.Status().Update(ctx, sc))
	if sc.Generation != gen || sc.Status.TotalConnections != 42 {
		t.Fatalf("status write: generation %d→%d, status %+v", gen, sc.Generation, sc.Status)
	}
	sc.Spec.MaxReplicas = 5
	sc.Status.TotalConnections = 7 // ignored on the main resource
	must(t, k8s.Update(ctx, sc))
	var got wsedgev1.WSEdgeScaler
	must(t, k8s.Get(ctx, client.ObjectKeyFromObject(sc), &got))
	if got.Status.TotalConnections != 42 || got.Spec.MaxReplicas != 5 || got.Generation != gen+1 {
		t.Fatalf("after spec write: generation %d, status %+v, max %d", got.Generation, got.Status, got.Spec.MaxReplicas)
	}
}

// Over the target: the Deployment is scaled up through its scale
// subresource, the status and an Event say why.
func TestReconcileScaleUp(t *testing.T) {
	f := newFixture(t, k8s, 2, 180, 220)
	f.scaler(nil)
	f.reconcile()
	if r := f.replicas(); r != 4 {
		t.Fatalf("replicas %d, want 4", r)
	}
	st := f.status()
	if st.DesiredReplicas != 4 || st.TotalConnections != 400 || len(st.Pods) != 2 || st.LastScaleTime == nil {
		t.Fatalf("status %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, CondScaling); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "ScaleUp" {
		t.Fatalf("Scaling condition %+v", c)
	}
	if note := f.waitEvent("ScaledUp"); !strings.Contains(note, "400 connections / 100 per pod") {
		t.Fatalf("event note %q", note)
	}
	for _, p := range f.pods {
		for _, a := range p.auth {
			if a != "Bearer "+token {
				t.Fatalf("pod asked with %q", a)
			}
		}
	}
}

// Under the target after the down window: every pod gets its connection
// count as pod-deletion-cost, then replicas go down by the allowed step.
// Runs as a user holding only the generated ClusterRole.
func TestReconcileScaleDownSetsDeletionCostFirst(t *testing.T) {
	f := newFixture(t, nil, 4, 30, 5, 50, 12)
	f.rec.Client = roleClient(t, f.ns)
	f.scaler(func(s *wsedgev1.WSEdgeScalerSpec) {
		s.ScaleDown = &wsedgev1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](60), MaxPods: ptr.To[int32](2)}
		s.Rebalance.Enabled = ptr.To(false)
	})
	f.reconcile() // first sight: the down window starts now
	if r := f.replicas(); r != 4 {
		t.Fatalf("scaled down before a whole window: %d", r)
	}
	f.clock = f.clock.Add(61 * time.Second)
	f.reconcile()
	if r := f.replicas(); r != 2 {
		t.Fatalf("replicas %d, want 2", r)
	}
	want := map[string]string{"edge-0": "30", "edge-1": "5", "edge-2": "50", "edge-3": "12"}
	for name, cost := range want {
		var p corev1.Pod
		must(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &p))
		if p.Annotations[DeletionCostAnnotation] != cost {
			t.Fatalf("%s cost %q, want %s", name, p.Annotations[DeletionCostAnnotation], cost)
		}
	}
	f.waitEvent("ScaledDown")
}

// A pod whose endpoint fails is counted full: the scaler is Degraded,
// never scales down, but still scales up.
func TestReconcileUnreadablePodIsFull(t *testing.T) {
	f := newFixture(t, k8s, 3, 10, 10, 10)
	f.scaler(func(s *wsedgev1.WSEdgeScalerSpec) {
		s.ScaleDown = &wsedgev1.ScalingRules{StabilizationWindowSeconds: ptr.To[int32](0)}
	})
	f.pods["edge-2"].mu.Lock()
	f.pods["edge-2"].down = true
	f.pods["edge-2"].mu.Unlock()
	f.reconcile()
	if r := f.replicas(); r != 3 {
		t.Fatalf("replicas %d with an unreadable pod, want 3", r)
	}
	st := f.status()
	c := meta.FindStatusCondition(st.Conditions, CondDegraded)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "edge-2") {
		t.Fatalf("Degraded %+v", c)
	}
	for _, p := range st.Pods {
		if p.Name == "edge-2" && (p.Readable || p.Connections != 100) {
			t.Fatalf("unreadable pod counted as %+v, want full (100)", p)
		}
	}
	f.waitEvent("PodUnreadable")
	// Full means as busy as the busiest readable pod when that is over
	// the target: 350 + 2 × 350 = 1050 → 11 pods, capped by maxReplicas (8)
	// and by the step (4 per minute from 3).
	f.resolver.mu.Lock()
	f.resolver.m["edge-0"] = unroutable(t)
	f.resolver.mu.Unlock()
	f.pods["edge-1"].set(350, nil)
	f.reconcile()
	if r := f.replicas(); r != 7 {
		t.Fatalf("replicas %d, want 7", r)
	}
}

// After a scale-up the busy pods shed, within the per-pod share and the
// cluster-wide budget, with the drain settings, then wait a round.
func TestReconcileRebalance(t *testing.T) {
	f := newFixture(t, k8s, 4, 200, 200, 0, 0)
	f.scaler(func(s *wsedgev1.WSEdgeScalerSpec) {
		s.Rebalance = wsedgev1.Rebalance{ThresholdPercent: 20, MaxEvictionsPerSecond: 7, MaxPercentPerRound: 25}
		s.Drain = wsedgev1.Drain{SpreadSeconds: 10, JitterSeconds: 3}
	})
	f.reconcile()
	a, b := f.pods["edge-0"].shedReqs(), f.pods["edge-1"].shedReqs()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("sheds %v %v", a, b)
	}
	if total := a[0].Count + b[0].Count; total != 70 || max(a[0].Count, b[0].Count) != 50 {
		t.Fatalf("sheds %v %v, want 50 + 20 (budget 7/s × 10 s, 25%% of 200)", a, b)
	}
	if a[0].OverMS != 10000 || a[0].JitterMS != 3000 {
		t.Fatalf("shed timing %+v", a[0])
	}
	st := f.status()
	if st.SocketsShed != 70 || st.LastRebalanceTime == nil {
		t.Fatalf("status %+v", st)
	}
	f.waitEvent("Rebalanced")
	// Within the round (spread + jitter) nothing more is shed.
	f.clock = f.clock.Add(12 * time.Second)
	f.reconcile()
	if n := len(f.pods["edge-0"].shedReqs()) + len(f.pods["edge-1"].shedReqs()); n != 2 {
		t.Fatalf("%d sheds within the round", n)
	}
	// Balanced after the reconnects: nothing more, condition says so.
	for name, c := range map[string]int64{"edge-0": 110, "edge-1": 100, "edge-2": 95, "edge-3": 95} {
		f.pods[name].set(c, nil)
	}
	f.clock = f.clock.Add(10 * time.Second)
	f.reconcile()
	if n := len(f.pods["edge-0"].shedReqs()) + len(f.pods["edge-1"].shedReqs()); n != 2 {
		t.Fatalf("%d sheds when balanced", n)
	}
	if c := meta.FindStatusCondition(f.status().Conditions, CondRebalancing); c == nil || c.Reason != "Balanced" {
		t.Fatalf("Rebalancing %+v", c)
	}
}

// A missing target is reported, not an error loop.
func TestReconcileMissingTarget(t *testing.T) {
	f := newFixture(t, k8s, 2)
	f.scaler(func(s *wsedgev1.WSEdgeScalerSpec) { s.ScaleTargetRef.Name = "nope" })
	res, err := f.rec.Reconcile(context.Background(), reqFor(f.ns, "edge"))
	if err != nil || res.RequeueAfter != 15*time.Second {
		t.Fatalf("res %+v err %v", res, err)
	}
	if c := meta.FindStatusCondition(f.status().Conditions, CondReady); c == nil || c.Reason != "TargetNotFound" {
		t.Fatalf("Ready %+v", c)
	}
}

// The sample in config/samples decodes strictly into the API types (no
// unknown or misspelt field) and is accepted by the CRD as it is.
func TestSampleScaler(t *testing.T) {
	raw, err := os.ReadFile("../../config/samples/wsedge_v1alpha1_wsedgescaler.yaml")
	must(t, err)
	js, err := yaml.YAMLToJSON(raw)
	must(t, err)
	var sc wsedgev1.WSEdgeScaler
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	must(t, dec.Decode(&sc))
	if sc.Spec.TargetMemoryBytesPerPod == nil || sc.Spec.AdminTokenSecretRef == nil {
		t.Fatalf("sample lacks its optional fields: %+v", sc.Spec)
	}
	sc.Namespace = namespace(t)
	must(t, k8s.Create(context.Background(), &sc))
}
