// Package controller reconciles WSEdgeScalers: it reads the target
// Deployment's pods over HTTP, asks internal/scaling what to do, and does
// it (scale subresource, pod-deletion-cost annotations, sheds), then
// reports in the status, Events and metrics.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	wsedgev1 "github.com/wsedge/wsedge/operator/api/v1alpha1"
	"github.com/wsedge/wsedge/operator/internal/podapi"
	"github.com/wsedge/wsedge/operator/internal/scaling"
)

// DeletionCostAnnotation is KEP-2255's: a ReplicaSet scaling down deletes
// the pods with the lowest cost first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// Condition types of the status.
const (
	CondReady       = "Ready"
	CondScaling     = "Scaling"
	CondRebalancing = "Rebalancing"
	CondDegraded    = "Degraded"
)

// Reconciler owns the decision history of every scaler it reconciles.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Pods     *podapi.Client
	Resolver podapi.Resolver
	Metrics  *Metrics
	// Concurrency bounds the status reads in flight per reconcile.
	Concurrency int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Only, when set, restricts the controller to the scaler of that name
	// (one operator per Helm release in a shared namespace).
	Only string

	mu   sync.Mutex
	hist map[types.NamespacedName]scaling.History
}

// +kubebuilder:rbac:groups=wsedge.io,resources=wsedgescalers,verbs=get;list;watch
// +kubebuilder:rbac:groups=wsedge.io,resources=wsedgescalers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=get;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller: it reconciles on scaler and
// Deployment changes, and on its own timer (spec.syncPeriodSeconds) to read
// the pods' loads, which the API server does not know.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		// Spec changes only: the status this controller writes must not
		// trigger it again (the timer reads the pods).
		For(&wsedgev1.WSEdgeScaler{}, builder.WithPredicates(predicate.GenerationChangedPredicate{},
			predicate.NewPredicateFuncs(func(o client.Object) bool { return r.Only == "" || o.GetName() == r.Only }))).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.scalersFor)).
		Named("wsedgescaler").
		Complete(r)
}

// scalersFor maps a Deployment to the scalers that target it.
func (r *Reconciler) scalersFor(ctx context.Context, o client.Object) []ctrl.Request {
	var list wsedgev1.WSEdgeScalerList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []ctrl.Request
	for _, s := range list.Items {
		if s.Spec.ScaleTargetRef.Name == o.GetName() && (r.Only == "" || s.Name == r.Only) {
			out = append(out, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// PolicyFrom resolves a spec's defaults (the CRD defaults them too; this
// covers objects written before a default existed).
func PolicyFrom(s wsedgev1.WSEdgeScalerSpec) scaling.Policy {
	or := func(p *int32, d int32) int32 {
		if p == nil {
			return d
		}
		return *p
	}
	pos := func(v, d int32) int32 {
		if v <= 0 {
			return d
		}
		return v
	}
	sec := func(v int32) time.Duration { return time.Duration(v) * time.Second }
	up, down := wsedgev1.ScalingRules{}, wsedgev1.ScalingRules{}
	if s.ScaleUp != nil {
		up = *s.ScaleUp
	}
	if s.ScaleDown != nil {
		down = *s.ScaleDown
	}
	p := scaling.Policy{
		Min: pos(s.MinReplicas, 2), Max: pos(s.MaxReplicas, 1), Target: int64(pos(s.TargetConnectionsPerPod, 1)),
		UpWindow: sec(or(up.StabilizationWindowSeconds, 0)), UpMaxPods: or(up.MaxPods, 4),
		UpPeriod:   sec(or(up.PeriodSeconds, 60)),
		DownWindow: sec(or(down.StabilizationWindowSeconds, 300)), DownMaxPods: or(down.MaxPods, 1),
		DownPeriod:         sec(or(down.PeriodSeconds, 300)),
		Rebalance:          s.Rebalance.Enabled == nil || *s.Rebalance.Enabled,
		ThresholdPercent:   pos(s.Rebalance.ThresholdPercent, 20),
		MaxEvictionsPerSec: pos(s.Rebalance.MaxEvictionsPerSecond, 50),
		MaxPercentPerRound: pos(s.Rebalance.MaxPercentPerRound, 10),
		Spread:             sec(pos(s.Drain.SpreadSeconds, 10)),
		Jitter:             sec(max(s.Drain.JitterSeconds, 0)),
	}
	if s.TargetMemoryBytesPerPod != nil {
		p.TargetMemory = *s.TargetMemoryBytesPerPod
	}
	p.Max = max(p.Max, p.Min)
	return p
}

// Reconcile reads, decides, acts and reports once, then asks to be called
// again after the sync period.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var sc wsedgev1.WSEdgeScaler
	if err := r.Client.Get(ctx, req.NamespacedName, &sc); err != nil {
		if apierrors.IsNotFound(err) {
			r.mu.Lock()
			delete(r.hist, req.NamespacedName)
			r.mu.Unlock()
			r.Metrics.forget(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get scaler: %w", err)
	}
	res, err := r.reconcile(ctx, &sc)
	result := "ok"
	if err != nil {
		result = "error"
		logger.Error(err, "reconcile")
	}
	r.Metrics.reconciles.WithLabelValues(sc.Namespace, sc.Name, result).Inc()
	return res, err
}

// observed is one pod as read this sync.
type observed struct {
	pod    *corev1.Pod
	addr   string
	status podapi.Status
	memory int64
	err    error
}

func (r *Reconciler) reconcile(ctx context.Context, sc *wsedgev1.WSEdgeScaler) (ctrl.Result, error) {
	key := types.NamespacedName{Namespace: sc.Namespace, Name: sc.Name}
	pol := PolicyFrom(sc.Spec)
	sync := time.Duration(max(sc.Spec.SyncPeriodSeconds, 1)) * time.Second
	if sc.Spec.SyncPeriodSeconds == 0 {
		sync = 15 * time.Second
	}
	requeue := ctrl.Result{RequeueAfter: sync}
	st := sc.Status.DeepCopy()
	st.ObservedGeneration = sc.Generation

	var dep appsv1.Deployment
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: sc.Namespace, Name: sc.Spec.ScaleTargetRef.Name}, &dep); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("get deployment %s: %w", sc.Spec.ScaleTargetRef.Name, err)
		}
		setCond(st, sc.Generation, CondReady, false, "TargetNotFound", "deployment "+sc.Spec.ScaleTargetRef.Name+" not found")
		return requeue, r.writeStatus(ctx, sc, st)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || sel.Empty() {
		setCond(st, sc.Generation, CondReady, false, "BadSelector", "deployment selector unusable")
		return requeue, r.writeStatus(ctx, sc, st)
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(sc.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list pods: %w", err)
	}
	current := int32(1)
	if dep.Spec.Replicas != nil {
		current = *dep.Spec.Replicas
	}

	token, tokenErr := r.token(ctx, sc)
	obs := r.read(ctx, sc, pods.Items, token, tokenErr, pol.TargetMemory > 0)

	in := scaling.Input{Now: r.now(), Policy: pol, Current: current}
	var unreadable []string
	var firstErr error
	for _, o := range obs {
		p := scaling.Pod{Name: o.pod.Name, Ready: podReady(o.pod)}
		if p.Ready {
			p.Readable = o.err == nil
			if o.err != nil {
				unreadable = append(unreadable, o.pod.Name)
				firstErr = cmpErr(firstErr, o.err)
			} else {
				p.Connections, p.Draining, p.Shedding, p.MemoryBytes = o.status.Connections, o.status.Draining, o.status.Shedding > 0, o.memory
			}
		}
		in.Pods = append(in.Pods, p)
	}
	r.mu.Lock()
	if r.hist == nil {
		r.hist = map[types.NamespacedName]scaling.History{}
	}
	in.History = r.hist[key]
	r.mu.Unlock()

	d, next := scaling.Decide(in)
	actErr := r.act(ctx, sc, &dep, obs, d, token, pol, st)
	if actErr != nil {
		// Not done: the rates and rounds must not count it.
		next.Scales, next.LastRebalance = in.History.Scales, in.History.LastRebalance
	}
	r.mu.Lock()
	r.hist[key] = next
	r.mu.Unlock()

	// Status.
	st.CurrentReplicas = current
	st.DesiredReplicas = d.Desired
	st.TotalConnections = d.Total
	st.Pods = st.Pods[:0]
	for _, l := range d.Loads {
		st.Pods = append(st.Pods, wsedgev1.PodLoad{Name: l.Name, Connections: l.Connections, Readable: l.Readable, Draining: l.Draining})
	}
	sort.Slice(st.Pods, func(i, j int) bool { return st.Pods[i].Name < st.Pods[j].Name })
	setCond(st, sc.Generation, CondReady, true, "TargetFound", fmt.Sprintf("%d pods read", len(d.Loads)-len(unreadable)))
	switch {
	case d.Action == scaling.ScaleUp || d.Action == scaling.ScaleDown:
		reason := "ScaleUp"
		if d.Action == scaling.ScaleDown {
			reason = "ScaleDown"
		}
		setCond(st, sc.Generation, CondScaling, actErr == nil, reason, d.Reason)
	case dep.Status.ReadyReplicas != current || dep.Status.Replicas != current:
		setCond(st, sc.Generation, CondScaling, true, "RollingOut",
			fmt.Sprintf("%d of %d replicas ready (%d exist)", dep.Status.ReadyReplicas, current, dep.Status.Replicas))
	default:
		msg := "replicas match the load"
		if d.Reason != "" && d.Action != scaling.Rebalance {
			msg = d.Reason
		}
		setCond(st, sc.Generation, CondScaling, false, "Stable", msg)
	}
	switch {
	case d.Action == scaling.Rebalance:
		setCond(st, sc.Generation, CondRebalancing, actErr == nil, "Shedding", d.Reason)
	case d.Balanced:
		setCond(st, sc.Generation, CondRebalancing, false, "Balanced", fmt.Sprintf("every pod within %d%% of the mean", pol.ThresholdPercent))
	default:
		setCond(st, sc.Generation, CondRebalancing, pol.Rebalance, "Uneven", "pods outside the threshold; waiting for a round")
	}
	if len(unreadable) > 0 || tokenErr != nil {
		msg := fmt.Sprintf("%d pods unreadable (counted full, no scale-down or rebalance): %v", len(unreadable), unreadable)
		if firstErr != nil {
			msg += ": " + firstErr.Error()
		}
		setCond(st, sc.Generation, CondDegraded, true, "PodsUnreadable", msg)
	} else {
		setCond(st, sc.Generation, CondDegraded, false, "AllPodsRead", "every ready pod answered")
	}

	// Metrics.
	ns, name := sc.Namespace, sc.Name
	r.Metrics.desired.WithLabelValues(ns, name).Set(float64(d.Desired))
	r.Metrics.current.WithLabelValues(ns, name).Set(float64(current))
	r.Metrics.connections.WithLabelValues(ns, name).Set(float64(d.Total))
	r.Metrics.unreadable.WithLabelValues(ns, name).Set(float64(len(unreadable)))
	r.Metrics.imbalance.WithLabelValues(ns, name).Set(imbalance(d.Loads))

	if len(unreadable) > 0 {
		r.Recorder.Eventf(sc, nil, corev1.EventTypeWarning, "PodUnreadable", "ReadStatus",
			"%d pods unreadable, counted full: %v", len(unreadable), firstErr)
	}
	if err := r.writeStatus(ctx, sc, st); err != nil {
		return ctrl.Result{}, err
	}
	return requeue, actErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// token reads the admin bearer token from the scaler's Secret.
func (r *Reconciler) token(ctx context.Context, sc *wsedgev1.WSEdgeScaler) (string, error) {
	ref := sc.Spec.AdminTokenSecretRef
	if ref == nil {
		return "", nil
	}
	var s corev1.Secret
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: sc.Namespace, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("admin token secret %s: %w", ref.Name, err)
	}
	k := ref.Key
	if k == "" {
		k = "token"
	}
	v, ok := s.Data[k]
	if !ok || len(v) == 0 {
		return "", fmt.Errorf("admin token secret %s has no key %q", ref.Name, k)
	}
	return string(trimSpace(v)), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// read fetches every ready pod's status, at most Concurrency at once, each
// within the client's timeout. A pod that fails is unreadable.
func (r *Reconciler) read(ctx context.Context, sc *wsedgev1.WSEdgeScaler, pods []corev1.Pod, token string, tokenErr error, memory bool) []observed {
	obs := make([]observed, len(pods))
	port := sc.Spec.AdminPort
	if port == 0 {
		port = 9090
	}
	for i := range pods {
		obs[i].pod = &pods[i]
	}
	podapi.Each(len(obs), r.Concurrency, func(i int) {
		o := &obs[i]
		if !podReady(o.pod) {
			return
		}
		if tokenErr != nil {
			o.err = tokenErr
			return
		}
		o.addr, o.err = r.Resolver.Resolve(o.pod, port)
		if o.err != nil {
			return
		}
		start := time.Now()
		o.status, o.err = r.Pods.Status(ctx, o.addr, token)
		r.Metrics.readSeconds.WithLabelValues(sc.Namespace, sc.Name).Observe(time.Since(start).Seconds())
		if o.err == nil && memory {
			// Memory is optional: without it the memory target is off
			// for this sync, the pod stays readable.
			o.memory, _ = r.Pods.ResidentMemory(ctx, o.addr)
		}
		if o.err != nil {
			r.Metrics.readErrors.WithLabelValues(sc.Namespace, sc.Name).Inc()
		}
	})
	sort.Slice(obs, func(i, j int) bool { return obs[i].pod.Name < obs[j].pod.Name })
	return obs
}

// podReady: the Ready condition holds and the pod is not terminating.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// act carries out a decision.
func (r *Reconciler) act(ctx context.Context, sc *wsedgev1.WSEdgeScaler, dep *appsv1.Deployment, obs []observed,
	d scaling.Decision, token string, pol scaling.Policy, st *wsedgev1.WSEdgeScalerStatus) error {
	ns, name := sc.Namespace, sc.Name
	switch d.Action {
	case scaling.ScaleUp:
		if err := r.scale(ctx, dep, d.Desired); err != nil {
			r.Recorder.Eventf(sc, dep, corev1.EventTypeWarning, "ScaleFailed", "Scale", "%s: %v", d.Reason, err)
			return err
		}
		r.Metrics.scales.WithLabelValues(ns, name, "up").Inc()
		r.Recorder.Eventf(sc, dep, corev1.EventTypeNormal, "ScaledUp", "Scale", "%s", d.Reason)
	case scaling.ScaleDown:
		// Costs on every pod just before lowering, not continuously
		// (KEP-2255): each write is an API call and an update event.
		for _, o := range obs {
			cost, ok := d.DeletionCosts[o.pod.Name]
			if !ok {
				continue
			}
			patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, DeletionCostAnnotation, strconv.FormatInt(cost, 10))
			if err := r.Client.Patch(ctx, o.pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
				err = fmt.Errorf("annotate pod %s: %w", o.pod.Name, err)
				r.Recorder.Eventf(sc, dep, corev1.EventTypeWarning, "ScaleFailed", "Scale", "%s: %v", d.Reason, err)
				return err
			}
		}
		if err := r.scale(ctx, dep, d.Desired); err != nil {
			r.Recorder.Eventf(sc, dep, corev1.EventTypeWarning, "ScaleFailed", "Scale", "%s: %v", d.Reason, err)
			return err
		}
		r.Metrics.scales.WithLabelValues(ns, name, "down").Inc()
		r.Recorder.Eventf(sc, dep, corev1.EventTypeNormal, "ScaledDown", "Scale", "%s", d.Reason)
	case scaling.Rebalance:
		addr := map[string]string{}
		for _, o := range obs {
			addr[o.pod.Name] = o.addr
		}
		var mu sync.Mutex
		var accepted int64
		var errs []error
		podapi.Each(len(d.Sheds), r.Concurrency, func(i int) {
			s := d.Sheds[i]
			res, err := r.Pods.Shed(ctx, addr[s.Pod], token, podapi.ShedRequest{
				Count: s.Count, OverMS: pol.Spread.Milliseconds(), JitterMS: pol.Jitter.Milliseconds()})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: %w", s.Pod, err))
				return
			}
			accepted += res.Accepted
		})
		r.Metrics.shed.WithLabelValues(ns, name).Add(float64(accepted))
		st.SocketsShed += accepted
		if accepted > 0 {
			now := metav1.NewTime(r.now())
			st.LastRebalanceTime, st.LastRebalanceReason = &now, d.Reason
			r.Recorder.Eventf(sc, dep, corev1.EventTypeNormal, "Rebalanced", "Shed", "%s; %d accepted", d.Reason, accepted)
		}
		if err := errors.Join(errs...); err != nil {
			r.Recorder.Eventf(sc, dep, corev1.EventTypeWarning, "ShedFailed", "Shed", "%v", err)
			if accepted == 0 {
				return fmt.Errorf("rebalance: %w", err)
			}
		}
		return nil
	default:
		return nil
	}
	now := metav1.NewTime(r.now())
	st.LastScaleTime, st.LastScaleReason = &now, d.Reason
	return nil
}

// scale sets the Deployment's replicas through its scale subresource, so
// the operator needs no write access to the Deployment itself.
func (r *Reconciler) scale(ctx context.Context, dep *appsv1.Deployment, replicas int32) error {
	var s autoscalingv1.Scale
	if err := r.Client.SubResource("scale").Get(ctx, dep, &s); err != nil {
		return fmt.Errorf("get scale: %w", err)
	}
	s.Spec.Replicas = replicas
	if err := r.Client.SubResource("scale").Update(ctx, dep, client.WithSubResourceBody(&s)); err != nil {
		return fmt.Errorf("update scale: %w", err)
	}
	return nil
}

func (r *Reconciler) writeStatus(ctx context.Context, sc *wsedgev1.WSEdgeScaler, st *wsedgev1.WSEdgeScalerStatus) error {
	patch := client.MergeFrom(sc.DeepCopy())
	sc.Status = *st
	if err := r.Client.Status().Patch(ctx, sc, patch); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

func setCond(st *wsedgev1.WSEdgeScalerStatus, gen int64, typ string, ok bool, reason, msg string) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen})
}

func imbalance(loads []scaling.Load) float64 {
	var n, total, hi int64
	for _, l := range loads {
		if l.Draining {
			continue
		}
		n++
		total += l.Connections
		hi = max(hi, l.Connections)
	}
	if total == 0 {
		return 1
	}
	return float64(hi) * float64(n) / float64(total)
}
