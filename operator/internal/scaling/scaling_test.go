package scaling

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func policy() Policy {
	return Policy{
		Min: 2, Max: 10, Target: 100,
		UpWindow: 0, DownWindow: 300 * time.Second,
		UpMaxPods: 4, DownMaxPods: 1,
		UpPeriod: 60 * time.Second, DownPeriod: 300 * time.Second,
		Rebalance: true, ThresholdPercent: 20, MaxEvictionsPerSec: 10, MaxPercentPerRound: 25,
		Spread: 10 * time.Second, Jitter: 5 * time.Second,
	}
}

func pods(conns ...int64) []Pod {
	out := make([]Pod, len(conns))
	for i, c := range conns {
		out[i] = Pod{Name: string(rune('a' + i)), Ready: true, Readable: true, Connections: c}
	}
	return out
}

// old history: the down window has been observed whole.
func old() History { return History{Start: t0.Add(-time.Hour)} }

func TestDecide(t *testing.T) {
	unreadable := pods(50, 0)
	unreadable[1].Readable = false
	allUnreadable := pods(0, 0)
	allUnreadable[0].Readable, allUnreadable[1].Readable = false, false
	starting := append(pods(60, 60, 60), Pod{Name: "d", Ready: false})
	draining := pods(60, 60, 60)
	draining[2].Draining = true
	shedding := pods(200, 10, 10)
	shedding[0].Shedding = true
	mem := pods(10, 10)
	mem[0].MemoryBytes, mem[1].MemoryBytes = 3<<30, 3<<30
	memUnknown := pods(10, 10)
	memUnknown[0].MemoryBytes = 3 << 30

	tests := []struct {
		name     string
		mod      func(*Policy)
		current  int32
		pods     []Pod
		hist     History
		action   Action
		desired  int32
		degraded bool
		costs    map[string]int64
		sheds    []Shed
		reason   string
	}{
		{name: "at target holds", current: 2, pods: pods(100, 100), hist: old(), action: None, desired: 2},
		{name: "over target scales up", current: 2, pods: pods(200, 200), hist: old(), action: ScaleUp, desired: 4,
			reason: "400 connections / 100 per pod"},
		{name: "scale up limited by max pods per period", current: 2, pods: pods(500, 500), hist: old(), action: ScaleUp, desired: 6},
		{name: "scale up limited by pods already added in the period", current: 4, pods: pods(200, 200, 200, 200),
			hist:   History{Start: t0.Add(-time.Hour), Scales: []ScaleEvent{{At: t0.Add(-30 * time.Second), From: 2, To: 4}}},
			action: ScaleUp, desired: 6},
		{name: "scale up after the period is free again", current: 4, pods: pods(200, 200, 200, 200),
			hist:   History{Start: t0.Add(-time.Hour), Scales: []ScaleEvent{{At: t0.Add(-61 * time.Second), From: 2, To: 6}}},
			action: ScaleUp, desired: 8},
		{name: "scale up capped by max replicas", current: 8, pods: pods(300, 300, 300, 300, 300, 300, 300, 300), hist: old(),
			action: ScaleUp, desired: 10},
		{name: "scale up window keeps the lowest recent recommendation", current: 2, pods: pods(200, 200),
			mod:    func(p *Policy) { p.UpWindow = 60 * time.Second },
			hist:   History{Start: t0.Add(-time.Hour), Recommendations: []Recommendation{{At: t0.Add(-30 * time.Second), Replicas: 2}}},
			action: None, desired: 2},
		{name: "scale up window: a spike that held the whole window", current: 2, pods: pods(200, 200),
			mod:    func(p *Policy) { p.UpWindow = 60 * time.Second },
			hist:   History{Start: t0.Add(-time.Hour), Recommendations: []Recommendation{{At: t0.Add(-30 * time.Second), Replicas: 3}}},
			action: ScaleUp, desired: 3},
		{name: "below min scales up to min", current: 1, pods: pods(0), hist: old(), action: ScaleUp, desired: 2},
		{name: "above max scales down to max at once", current: 12, pods: pods(900, 900, 900, 900, 900, 900, 900, 900, 900, 900, 900, 900),
			hist: old(), action: ScaleDown, desired: 10, costs: map[string]int64{"a": 900, "b": 900, "c": 900, "d": 900, "e": 900,
				"f": 900, "g": 900, "h": 900, "i": 900, "j": 900, "k": 900, "l": 900}},
		{name: "under target scales down one pod with costs", current: 4, pods: pods(30, 10, 50, 20), hist: old(),
			action: ScaleDown, desired: 3, costs: map[string]int64{"a": 30, "b": 10, "c": 50, "d": 20}},
		{name: "scale down more pods when allowed", current: 4, pods: pods(30, 10, 50, 20), hist: old(),
			mod:    func(p *Policy) { p.DownMaxPods = 2 },
			action: ScaleDown, desired: 2, costs: map[string]int64{"a": 30, "b": 10, "c": 50, "d": 20}},
		{name: "scale down waits for a whole observed window", current: 4, pods: pods(20, 20, 20, 20),
			hist: History{Start: t0.Add(-100 * time.Second)}, action: None, desired: 4},
		{name: "scale down window keeps the highest recent recommendation", current: 4, pods: pods(20, 20, 20, 20),
			hist:   History{Start: t0.Add(-time.Hour), Recommendations: []Recommendation{{At: t0.Add(-200 * time.Second), Replicas: 4}}},
			action: None, desired: 4},
		{name: "scale down limited by removals in the period", current: 3, pods: pods(10, 10, 10),
			hist:   History{Start: t0.Add(-time.Hour), Scales: []ScaleEvent{{At: t0.Add(-100 * time.Second), From: 4, To: 3}}},
			action: None, desired: 3},
		{name: "unreadable pod counts as full and scales up", current: 2, pods: unreadable, hist: old(),
			mod: func(p *Policy) { p.Target = 40 }, action: ScaleUp, desired: 3, degraded: true, reason: "1 unreadable pods counted full"},
		{name: "unreadable pod never lets a scale down happen", current: 4, pods: append(pods(1, 1, 1), Pod{Name: "x", Ready: true}),
			hist: old(), action: None, desired: 4, degraded: true, reason: "pods unreadable: x"},
		{name: "no pod readable holds", current: 2, pods: allUnreadable, hist: old(), action: None, desired: 2, degraded: true},
		{name: "no ready pod holds", current: 3, pods: []Pod{{Name: "a"}, {Name: "b"}}, hist: old(), action: None, desired: 3},
		{name: "starting pod holds the scale down", current: 4, pods: starting, hist: old(), action: None, desired: 4,
			reason: "pods starting, draining or shedding"},
		{name: "draining pod is not counted and holds the scale down", current: 3, pods: draining, hist: old(), action: None, desired: 3},
		{name: "balanced: nothing to shed", current: 4, pods: pods(110, 90, 100, 100), hist: old(), action: None, desired: 4},
		{name: "after scale up the busy pods shed, capped per pod", current: 4, pods: pods(200, 200, 0, 0), hist: old(),
			action: Rebalance, desired: 4, sheds: []Shed{{"a", 50}, {"b", 50}}},
		{name: "the cluster-wide budget caps a round", current: 4, pods: pods(200, 200, 0, 0), hist: old(),
			mod: func(p *Policy) { p.MaxEvictionsPerSec = 7 }, action: Rebalance, desired: 4, sheds: []Shed{{"a", 50}, {"b", 20}}},
		{name: "shed only down to the mean", current: 3, pods: pods(130, 90, 80), hist: old(),
			mod: func(p *Policy) { p.MaxPercentPerRound = 50 }, action: Rebalance, desired: 3, sheds: []Shed{{"a", 30}}},
		{name: "a pod far below with none over: the pods above the mean shed", current: 5, pods: pods(120, 120, 120, 120, 20), hist: old(),
			action: Rebalance, desired: 5, sheds: []Shed{{"a", 20}, {"b", 20}, {"c", 20}, {"d", 20}}},
		{name: "next round waits for the last one's spread and jitter", current: 4, pods: pods(200, 200, 0, 0),
			hist: History{Start: t0.Add(-time.Hour), LastRebalance: t0.Add(-14 * time.Second)}, action: None, desired: 4},
		{name: "next round after spread and jitter", current: 4, pods: pods(200, 200, 0, 0),
			hist:   History{Start: t0.Add(-time.Hour), LastRebalance: t0.Add(-15 * time.Second)},
			action: Rebalance, desired: 4, sheds: []Shed{{"a", 50}, {"b", 50}}},
		{name: "no rebalance while a pod sheds", current: 3, pods: shedding, hist: old(), action: None, desired: 3},
		{name: "no rebalance while a pod starts", current: 3, pods: append(pods(200, 0), Pod{Name: "z"}), hist: old(), action: None, desired: 3},
		{name: "no rebalance with an unreadable pod", current: 3, pods: append(pods(200, 0), Pod{Name: "z", Ready: true}), hist: old(),
			mod: func(p *Policy) { p.Target = 1000 }, action: None, desired: 3, degraded: true},
		{name: "no rebalance while a scale down waits for its window", current: 4, pods: pods(70, 10, 0, 0),
			hist: History{Start: t0.Add(-100 * time.Second)}, action: None, desired: 4},
		{name: "rebalance off", current: 4, pods: pods(200, 200, 0, 0), hist: old(), mod: func(p *Policy) { p.Rebalance = false },
			action: None, desired: 4},
		{name: "memory target raises the recommendation", current: 2, pods: mem, hist: old(),
			mod: func(p *Policy) { p.TargetMemory = 2 << 30 }, action: ScaleUp, desired: 3, reason: "bytes resident"},
		{name: "memory target ignored unless every pod reports it", current: 2, pods: memUnknown, hist: old(),
			mod: func(p *Policy) { p.TargetMemory = 1 << 30 }, action: None, desired: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy()
			if tc.mod != nil {
				tc.mod(&p)
			}
			d, _ := Decide(Input{Now: t0, Policy: p, Current: tc.current, Pods: tc.pods, History: tc.hist})
			if d.Action != tc.action || d.Desired != tc.desired || d.Degraded != tc.degraded {
				t.Fatalf("got %v desired %d degraded %v (%s); want %v %d %v", d.Action, d.Desired, d.Degraded, d.Reason, tc.action, tc.desired, tc.degraded)
			}
			if tc.costs != nil && !reflect.DeepEqual(d.DeletionCosts, tc.costs) {
				t.Fatalf("costs %v, want %v", d.DeletionCosts, tc.costs)
			}
			if tc.costs == nil && d.DeletionCosts != nil {
				t.Fatalf("costs %v without a scale down", d.DeletionCosts)
			}
			if !reflect.DeepEqual(d.Sheds, tc.sheds) {
				t.Fatalf("sheds %v, want %v", d.Sheds, tc.sheds)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", d.Reason, tc.reason)
			}
		})
	}
}

// The history Decide returns is what the next call needs: the recorded
// scale limits the next step, and old entries are pruned.
func TestDecideHistory(t *testing.T) {
	p := policy()
	h := History{Start: t0.Add(-time.Hour), Recommendations: []Recommendation{{At: t0.Add(-time.Hour), Replicas: 9}}}
	d, h := Decide(Input{Now: t0, Policy: p, Current: 2, Pods: pods(500, 500), History: h})
	if d.Action != ScaleUp || d.Desired != 6 {
		t.Fatalf("first: %v %d", d.Action, d.Desired)
	}
	if len(h.Recommendations) != 1 || h.Recommendations[0].Replicas != 10 {
		t.Fatalf("recommendations not pruned/recorded: %+v", h.Recommendations)
	}
	if len(h.Scales) != 1 || h.Scales[0] != (ScaleEvent{At: t0, From: 2, To: 6}) {
		t.Fatalf("scale not recorded: %+v", h.Scales)
	}
	d, h = Decide(Input{Now: t0.Add(10 * time.Second), Policy: p, Current: 6, Pods: pods(500, 500, 0, 0, 0, 0), History: h})
	if d.Action == ScaleUp || d.Desired != 6 {
		t.Fatalf("second within the period: %v %d", d.Action, d.Desired)
	}
	d, _ = Decide(Input{Now: t0.Add(61 * time.Second), Policy: p, Current: 6, Pods: pods(500, 500, 0, 0, 0, 0), History: h})
	if d.Action != ScaleUp || d.Desired != 10 {
		t.Fatalf("after the period: %v %d", d.Action, d.Desired)
	}
	// A fresh history starts now: no scale down for a whole window.
	d, h = Decide(Input{Now: t0, Policy: p, Current: 4, Pods: pods(1, 1, 1, 1)})
	if d.Action != None || !h.Start.Equal(t0) {
		t.Fatalf("fresh: %v start %v", d.Action, h.Start)
	}
	// A rebalance round is recorded.
	d, h = Decide(Input{Now: t0, Policy: p, Current: 4, Pods: pods(200, 200, 0, 0), History: old()})
	if d.Action != Rebalance || !h.LastRebalance.Equal(t0) {
		t.Fatalf("rebalance: %v last %v", d.Action, h.LastRebalance)
	}
}

// Whatever the loads, a round never sheds more than the budget, never more
// than the per-round share of a pod, and never a pod below the mean.
func TestPlanBounds(t *testing.T) {
	p := policy()
	for seed := int64(1); seed < 200; seed++ {
		n := 2 + seed%7
		loads := make([]Load, n)
		var total int64
		for i := range loads {
			c := (seed * int64(i+3) * 7919) % 1000
			loads[i] = Load{Name: string(rune('a' + i)), Connections: c, Readable: true}
			total += c
		}
		if total == 0 {
			continue
		}
		var sum int64
		for _, s := range plan(loads, total, p) {
			var c int64
			for _, l := range loads {
				if l.Name == s.Pod {
					c = l.Connections
				}
			}
			if s.Count > c*int64(p.MaxPercentPerRound)/100 || c-s.Count < total/n || s.Count <= 0 {
				t.Fatalf("seed %d: shed %d of %d (mean %d)", seed, s.Count, c, total/n)
			}
			sum += s.Count
		}
		if sum > int64(p.MaxEvictionsPerSec)*int64(p.Spread/time.Second) {
			t.Fatalf("seed %d: %d over budget", seed, sum)
		}
	}
}
