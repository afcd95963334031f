package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeReport writes operator/test/results/e2e.json (every sample) and
// e2e.md (the phases side by side, and the series every 2 s).
func writeReport(t *testing.T, scs []*scenario) {
	t.Helper()
	dir := filepath.Join("..", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{
		"generated": time.Now().UTC().Format(time.RFC3339),
		"command":   "make test-operator (or: cd operator && go test -run TestOperatorVersusRandomDelete -count=1 ./test/e2e/)",
		"setup": map[string]any{
			"clients": clients, "leavers": leavers, "target_connections_per_pod": target,
			"rebalance_threshold_percent": threshold, "max_evictions_per_second": evictRate,
			"max_percent_per_round": perRound, "drain_spread_s": spreadSec, "drain_jitter_s": jitterSec,
			"server": "DRAIN_SPREAD=2s RECONNECT_JITTER=1s SESSION_HISTORY_SIZE=50000, one Redis", "publisher_msgs_per_s": 20,
		},
		"scenarios": scs,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "e2e.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	var m strings.Builder
	fmt.Fprintf(&m, "# Operator end-to-end: WSEdgeScaler versus an HPA-like random delete\n\n")
	fmt.Fprintf(&m, "Generated %s by `%s`.\n\n", doc["generated"], doc["command"])
	fmt.Fprintf(&m, "A Deployment on fake nodes (kwok) whose pods are real wsedge processes sharing one Redis; "+
		"%d clients connect through a random-choice Service, a publisher sends 20 broadcasts/s to all of them; "+
		"target %d connections per pod, so 2 → 4 pods; then %d clients leave and 4 → 2. "+
		"Rebalance: threshold %d%%, at most %d evictions/s for the Deployment, %d%% of a pod per round, "+
		"spread %d s, hints up to %d s. Pods deleted on scale-down drain with DRAIN_SPREAD=2s.\n\n",
		clients, target, leavers, threshold, evictRate, perRound, spreadSec, jitterSec)
	fmt.Fprintf(&m, "| scenario | phase | seconds | sockets moved | peak evictions/s | peak reconnects/s | max late after hint (ms) | note |\n|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scs {
		for _, p := range sc.Phases {
			note := p.Note
			if p.MaxEvictionsInSpread > 0 {
				note = strings.TrimSpace(fmt.Sprintf("%s; max %d in any %d s window", note, p.MaxEvictionsInSpread, spreadSec))
			}
			fmt.Fprintf(&m, "| %s | %s | %.1f | %d | %d | %d | %d | %s |\n", sc.Name, p.Name, p.EndS-p.StartS,
				p.SocketsMoved, p.PeakEvictions, p.PeakReconnect, p.MaxLateMS, note)
		}
	}
	fmt.Fprintf(&m, "\n| scenario | broadcasts sequenced | publisher writes | messages lost | duplicates | recovery failed | deleted pods (connections) | emptiest two at scale-down (connections) | two random pods on average |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scs {
		var del []string
		for i, p := range sc.DeletedPods {
			del = append(del, fmt.Sprintf("%s (%d)", p, sc.DeletedConns[i]))
		}
		fmt.Fprintf(&m, "| %s | %d | %d | %d | %d | %d | %s | %s (%d) | %.1f |\n", sc.Name, sc.Published, sc.PublisherWrites, sc.MessagesLost, sc.Duplicates,
			sc.RecoveryFails, strings.Join(del, ", "), strings.Join(sc.EmptiestPods, ", "), sc.EmptiestPair, sc.RandomPairMean)
	}
	for _, sc := range scs {
		if len(sc.Events) > 0 {
			fmt.Fprintf(&m, "\n### Events of the WSEdgeScaler (%s)\n\n", sc.Name)
			for _, e := range sc.Events {
				fmt.Fprintf(&m, "- %s\n", e)
			}
		}
	}
	for _, sc := range scs {
		fmt.Fprintf(&m, "\n### Replicas and connections per pod over time (%s), every 2 s\n\n", sc.Name)
		pods := map[string]bool{}
		for _, s := range sc.Samples {
			for p := range s.Pods {
				pods[p] = true
			}
		}
		names := make([]string, 0, len(pods))
		for p := range pods {
			names = append(names, p)
		}
		sort.Strings(names)
		fmt.Fprintf(&m, "| t (s) | replicas | %s |\n|---|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
		next := 0.0
		for _, s := range sc.Samples {
			if s.T < next {
				continue
			}
			next = s.T + 2
			cells := make([]string, len(names))
			for i, p := range names {
				if c, ok := s.Pods[p]; ok {
					cells[i] = fmt.Sprint(c)
				}
			}
			fmt.Fprintf(&m, "| %.1f | %d | %s |\n", s.T, s.Replicas, strings.Join(cells, " | "))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "e2e.md"), []byte(m.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
