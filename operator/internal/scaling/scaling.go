// Package scaling is the operator's decision core: from the pods' loads, the
// policy, the clock and what happened before, it decides the replica count,
// the pod-deletion costs for a scale-down and the sockets each pod should
// shed to rebalance. It does no I/O, so every rule is table-tested.
package scaling

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Pod is one pod of the target Deployment as the controller saw it.
type Pod struct {
	Name string
	// Ready: the pod's Ready condition is true and it is not terminating.
	Ready bool
	// Readable: its status endpoint answered this sync.
	Readable    bool
	Connections int64
	// MemoryBytes is the resident memory it reported (0: unknown).
	MemoryBytes int64
	Draining    bool
	Shedding    bool
}

// Policy is a WSEdgeScaler's spec with every default resolved.
type Policy struct {
	Min, Max     int32
	Target       int64 // connections per pod
	TargetMemory int64 // bytes per pod; 0: no memory target

	UpWindow, DownWindow   time.Duration
	UpMaxPods, DownMaxPods int32
	UpPeriod, DownPeriod   time.Duration

	Rebalance          bool
	ThresholdPercent   int32
	MaxEvictionsPerSec int32
	MaxPercentPerRound int32
	Spread, Jitter     time.Duration
}

// Recommendation is one sync's raw replica count, kept for the windows.
type Recommendation struct {
	At       time.Time
	Replicas int32
}

// ScaleEvent is one change of the replica count the operator made.
type ScaleEvent struct {
	At       time.Time
	From, To int32
}

// History is what the decisions depend on besides the present. The
// controller keeps one per scaler; Decide returns the next one.
type History struct {
	// Start is when the controller began watching this scaler: no
	// scale-down before a whole down window has been observed.
	Start           time.Time
	Recommendations []Recommendation
	Scales          []ScaleEvent
	LastRebalance   time.Time
}

// Input is everything one decision depends on.
type Input struct {
	Now     time.Time
	Policy  Policy
	Current int32 // the Deployment's spec.replicas
	Pods    []Pod
	History History
}

// Action is what the controller should do after a decision.
type Action int

const (
	// None: nothing to do.
	None Action = iota
	// ScaleUp: raise the replica count to Desired.
	ScaleUp
	// ScaleDown: set DeletionCosts on the pods, then lower to Desired.
	ScaleDown
	// Rebalance: ask the pods in Sheds to shed sockets.
	Rebalance
)

func (a Action) String() string {
	return [...]string{"none", "scale-up", "scale-down", "rebalance"}[a]
}

// Shed asks one pod to close Count sockets with reconnect hints.
type Shed struct {
	Pod   string
	Count int64
}

// Load is a pod's load as the decision counted it.
type Load struct {
	Name        string
	Connections int64 // assumed (full) when not Readable
	Readable    bool
	Draining    bool
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Recommendation is the raw replica count from the load, clamped to
	// [Min, Max]; Desired is after windows and rate limits.
	Recommendation int32
	Desired        int32
	Reason         string
	Total          int64
	Loads          []Load
	// Degraded: some ready pod could not be read (counted as full).
	Degraded bool
	// DeletionCosts (ScaleDown only): pod → controller.kubernetes.io/pod-deletion-cost.
	DeletionCosts map[string]int64
	Sheds         []Shed
	// Balanced: every pod is within the threshold of the mean.
	Balanced bool
}

// Decide applies the policy. It never scales down on missing data, never
// counts an unreadable pod as empty, and never sheds more than the
// cluster-wide eviction budget of one round.
func Decide(in Input) (Decision, History) {
	p := in.Policy
	h := in.History
	if h.Start.IsZero() {
		h.Start = in.Now
	}
	d := Decision{Desired: in.Current}

	// Loads: ready pods that are not leaving. An unreadable pod carries
	// the most of the target and the busiest readable pod: "full".
	var maxRead int64
	for _, pod := range in.Pods {
		if pod.Ready && pod.Readable && !pod.Draining && pod.Connections > maxRead {
			maxRead = pod.Connections
		}
	}
	full := max(p.Target, maxRead)
	var memTotal int64
	memKnown := p.TargetMemory > 0
	stable := int32(len(in.Pods)) == in.Current
	var unread []string
	for _, pod := range in.Pods {
		if !pod.Ready || pod.Draining {
			stable = false
			if pod.Draining && pod.Ready {
				d.Loads = append(d.Loads, Load{Name: pod.Name, Connections: pod.Connections, Readable: pod.Readable, Draining: true})
			}
			continue
		}
		l := Load{Name: pod.Name, Connections: pod.Connections, Readable: pod.Readable}
		if !pod.Readable {
			l.Connections = full
			unread = append(unread, pod.Name)
			memKnown = false
		} else if pod.MemoryBytes <= 0 {
			memKnown = false
		}
		if pod.Shedding {
			stable = false
		}
		memTotal += pod.MemoryBytes
		d.Total += l.Connections
		d.Loads = append(d.Loads, l)
	}
	d.Degraded = len(unread) > 0

	rec := int32(ceilDiv(d.Total, p.Target))
	why := fmt.Sprintf("%d connections / %d per pod", d.Total, p.Target)
	if memKnown {
		if m := int32(ceilDiv(memTotal, p.TargetMemory)); m > rec {
			rec = m
			why = fmt.Sprintf("%d bytes resident / %d per pod", memTotal, p.TargetMemory)
		}
	}
	counted := int32(0)
	for _, l := range d.Loads {
		if !l.Draining {
			counted++
		}
	}
	if counted == 0 {
		// Nothing ready to read: hold, never shrink on no data.
		rec = in.Current
		why = "no ready pod to read"
	}
	rec = clamp(rec, p.Min, p.Max)
	d.Recommendation = rec

	// Windows: keep what the longer window needs.
	keep := max(p.UpWindow, p.DownWindow)
	recs := h.Recommendations[:0:0]
	for _, r := range h.Recommendations {
		if in.Now.Sub(r.At) < keep {
			recs = append(recs, r)
		}
	}
	recs = append(recs, Recommendation{At: in.Now, Replicas: rec})
	h.Recommendations = recs

	desired := in.Current
	switch {
	case rec > in.Current:
		up := rec
		for _, r := range recs {
			if in.Now.Sub(r.At) <= p.UpWindow && r.Replicas < up {
				up = r.Replicas
			}
		}
		desired = max(in.Current, up)
		if added := moved(h.Scales, in.Now, p.UpPeriod, true); desired > in.Current+p.UpMaxPods-added {
			desired = max(in.Current, in.Current+p.UpMaxPods-added)
		}
	case rec < in.Current:
		down := rec
		for _, r := range recs {
			if in.Now.Sub(r.At) <= p.DownWindow && r.Replicas > down {
				down = r.Replicas
			}
		}
		if in.Now.Sub(h.Start) < p.DownWindow {
			down = in.Current // the window is not yet observed whole
		}
		desired = min(in.Current, down)
		if removed := moved(h.Scales, in.Now, p.DownPeriod, false); desired < in.Current-(p.DownMaxPods-removed) {
			desired = min(in.Current, in.Current-(p.DownMaxPods-removed))
		}
	}
	// Bounds win over windows and rates (a lowered maxReplicas applies now).
	desired = clamp(desired, p.Min, p.Max)

	switch {
	case desired > in.Current:
		d.Action, d.Desired = ScaleUp, desired
		d.Reason = fmt.Sprintf("scale up %d → %d: %s", in.Current, desired, why)
		if len(unread) > 0 {
			d.Reason += fmt.Sprintf(" (%d unreadable pods counted full)", len(unread))
		}
	case desired < in.Current && (d.Degraded || !stable):
		d.Reason = fmt.Sprintf("scale down %d → %d held: ", in.Current, desired)
		if d.Degraded {
			d.Reason += "pods unreadable: " + strings.Join(unread, ",")
		} else {
			d.Reason += "pods starting, draining or shedding"
		}
	case desired < in.Current:
		d.Action, d.Desired = ScaleDown, desired
		d.Reason = fmt.Sprintf("scale down %d → %d: %s; emptiest pods first", in.Current, desired, why)
		d.DeletionCosts = make(map[string]int64, len(d.Loads))
		for _, l := range d.Loads {
			d.DeletionCosts[l.Name] = l.Connections
		}
	}
	if d.Action == ScaleUp || d.Action == ScaleDown {
		h.Scales = append(pruneScales(h.Scales, in.Now, max(p.UpPeriod, p.DownPeriod)), ScaleEvent{At: in.Now, From: in.Current, To: d.Desired})
		return d, h
	}
	h.Scales = pruneScales(h.Scales, in.Now, max(p.UpPeriod, p.DownPeriod))

	d.Balanced = balanced(d.Loads, p.ThresholdPercent)
	// A pending scale-down (held by its window) moves sockets anyway:
	// shedding now would move some of them twice.
	if !p.Rebalance || d.Balanced || d.Degraded || !stable || counted < 2 || rec < in.Current {
		return d, h
	}
	if !h.LastRebalance.IsZero() && in.Now.Sub(h.LastRebalance) < p.Spread+p.Jitter {
		return d, h // the last round's closes and reconnects are still landing
	}
	d.Sheds = plan(d.Loads, d.Total, p)
	if len(d.Sheds) > 0 {
		d.Action = Rebalance
		var n int64
		for _, s := range d.Sheds {
			n += s.Count
		}
		d.Reason = fmt.Sprintf("rebalance: shed %d sockets from %d pods over %s (mean %d, threshold %d%%)",
			n, len(d.Sheds), p.Spread, d.Total/int64(counted), p.ThresholdPercent)
		h.LastRebalance = in.Now
	}
	return d, h
}

// balanced: every pod within ±threshold of the mean.
func balanced(loads []Load, thresholdPct int32) bool {
	var n, total int64
	for _, l := range loads {
		if !l.Draining {
			n++
			total += l.Connections
		}
	}
	if n == 0 {
		return true
	}
	for _, l := range loads {
		if l.Draining {
			continue
		}
		// |c - mean| > mean*t/100, in integers: |c*n - total|*100 > total*t
		dev := l.Connections*n - total
		if dev < 0 {
			dev = -dev
		}
		if dev*100 > total*int64(thresholdPct) {
			return false
		}
	}
	return true
}

// plan picks the sheds of one round: from the pods above the band (or, when
// only some pod is below it, from the pods above the mean), each down to the
// mean at most and by at most MaxPercentPerRound of its sockets, the busiest
// first, within MaxEvictionsPerSec × Spread for the whole Deployment.
func plan(loads []Load, total int64, p Policy) []Shed {
	var live []Load
	for _, l := range loads {
		if !l.Draining {
			live = append(live, l)
		}
	}
	n := int64(len(live))
	mean := total / n
	over := func(l Load) bool { return (l.Connections*n-total)*100 > total*int64(p.ThresholdPercent) }
	anyOver := false
	for _, l := range live {
		anyOver = anyOver || over(l)
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].Connections > live[j].Connections })
	budget := int64(p.MaxEvictionsPerSec) * int64(p.Spread/time.Second)
	if budget < 1 {
		budget = int64(p.MaxEvictionsPerSec) // spread under a second: one second's worth
	}
	var out []Shed
	for _, l := range live {
		if budget == 0 {
			break
		}
		if anyOver && !over(l) || l.Connections <= mean {
			continue
		}
		c := min(l.Connections-mean, l.Connections*int64(p.MaxPercentPerRound)/100, budget)
		if c <= 0 {
			continue
		}
		out = append(out, Shed{Pod: l.Name, Count: c})
		budget -= c
	}
	return out
}

// moved counts the pods added (up) or removed within period before now.
func moved(evs []ScaleEvent, now time.Time, period time.Duration, up bool) int32 {
	var n int32
	for _, e := range evs {
		if now.Sub(e.At) >= period {
			continue
		}
		if up && e.To > e.From {
			n += e.To - e.From
		} else if !up && e.To < e.From {
			n += e.From - e.To
		}
	}
	return n
}

func pruneScales(evs []ScaleEvent, now time.Time, keep time.Duration) []ScaleEvent {
	out := evs[:0:0]
	for _, e := range evs {
		if now.Sub(e.At) < keep {
			out = append(out, e)
		}
	}
	return out
}

func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return 0
	}
	if a <= 0 {
		return 0
	}
	q := (a + b - 1) / b
	if q > math.MaxInt32 {
		return math.MaxInt32
	}
	return q
}

func clamp(v, lo, hi int32) int32 {
	return max(lo, min(v, hi))
}
