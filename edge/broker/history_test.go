package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// seqRecorder is a Handler that keeps seqs and payloads.
type seqRecorder struct {
	mu   sync.Mutex
	seqs map[string][]uint64
	msgs map[string][]string
}

func newSeqRecorder() *seqRecorder {
	return &seqRecorder{seqs: map[string][]uint64{}, msgs: map[string][]string{}}
}

func (r *seqRecorder) handle(session string, seq uint64, p []byte) bool {
	r.record(session, seq, p)
	return true
}

func (r *seqRecorder) record(session string, seq uint64, p []byte) {
	r.mu.Lock()
	r.seqs[session] = append(r.seqs[session], seq)
	r.msgs[session] = append(r.msgs[session], string(p))
	r.mu.Unlock()
}

func (r *seqRecorder) get(session string) ([]uint64, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs[session]...), append([]string(nil), r.msgs[session]...)
}

// checkSeqs verifies that seqs are exactly from, from+1, … (no gap, no
// duplicate, in order).
func checkSeqs(t *testing.T, who string, seqs []uint64, from uint64) {
	t.Helper()
	for i, s := range seqs {
		if s != from+uint64(i) {
			t.Fatalf("%s: position %d has seq %d, want %d (all: %v)", who, i, s, from+uint64(i), seqs)
		}
	}
}

func TestMemoryHistory(t *testing.T) {
	ctx := context.Background()
	rec := newSeqRecorder()
	m := NewMemoryHistory(HistoryOptions{Size: 5, TTL: 100 * time.Millisecond, MaxBytes: 1000})
	_ = m.Start(rec.handle)
	defer m.Close()
	h := m.History()
	if NewMemory().History() != nil || NewMemoryHistory(HistoryOptions{}).History() != nil {
		t.Fatal("history without a size must be off")
	}
	epoch, err := epochOf(h, "s")
	if err != nil || epoch == "" {
		t.Fatalf("Epoch = %q, %v", epoch, err)
	}
	_ = m.Subscribe("s")
	for i := range 8 {
		_ = m.Publish("s", []byte(strconv.Itoa(i)))
	}
	seqs, _ := rec.get("s")
	checkSeqs(t, "memory", seqs, 1)
	tests := []struct {
		since     uint64
		wantFirst uint64
		wantN     int
	}{
		{0, 4, 5}, {3, 4, 5}, {5, 6, 3}, {8, 0, 0}, {100, 0, 0},
	}
	for _, tt := range tests {
		rep, err := h.Since(ctx, "s", tt.since)
		if err != nil || rep.Epoch != epoch || rep.Last != 8 || len(rep.Entries) != tt.wantN {
			t.Fatalf("Since(%d) = %+v, %v; want epoch %s, last 8, %d entries", tt.since, rep, err, epoch, tt.wantN)
		}
		if tt.wantN > 0 && (rep.Entries[0].Seq != tt.wantFirst || string(rep.Entries[0].Payload) != strconv.Itoa(int(tt.wantFirst)-1)) {
			t.Fatalf("Since(%d): first %d %q, want %d", tt.since, rep.Entries[0].Seq, rep.Entries[0].Payload, tt.wantFirst)
		}
	}
	// The byte cap drops the oldest first.
	_ = m.Publish("s", make([]byte, 998))
	if rep, _ := h.Since(ctx, "s", 0); len(rep.Entries) != 3 || rep.Entries[2].Seq != 9 || rep.Entries[0].Seq != 7 {
		t.Fatalf("after a 998-byte message with a 1000-byte cap: %d entries", len(rep.Entries))
	}
	// A session with a subscriber keeps its ring; one without expires and
	// comes back with a new epoch.
	_ = m.Publish("gone", []byte("x"))
	e2, _ := epochOf(h, "gone")
	time.Sleep(400 * time.Millisecond)
	testenv.WaitFor(t, "ring of an idle session to expire", 5*time.Second, func() bool { return m.hist.sessions() == 1 })
	if e, _ := epochOf(h, "s"); e != epoch {
		t.Fatal("a subscribed session lost its history")
	}
	if e, _ := epochOf(h, "gone"); e == e2 {
		t.Fatal("an expired session kept its epoch")
	}
}

// Concurrent publishers: every subscriber sees seq 1..n in order.
func TestMemoryHistoryConcurrentOrder(t *testing.T) {
	rec := newSeqRecorder()
	m := NewMemoryHistory(HistoryOptions{Size: 10})
	_ = m.Start(rec.handle)
	defer m.Close()
	_ = m.Subscribe("s")
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				_ = m.Publish("s", []byte(fmt.Sprintf("%d:%d", p, i)))
			}
		}()
	}
	wg.Wait()
	seqs, _ := rec.get("s")
	checkSeqs(t, "memory", seqs, 1)
	if len(seqs) != 2000 {
		t.Fatalf("%d deliveries, want 2000", len(seqs))
	}
}

func TestRedisHistory(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { testRedisHistory(t, be) })
	}
}

// Two instances with history: both deliver every message with the same seq,
// in seq order (the publisher's own copy too); Since agrees with what was
// delivered, trims to the size, and a flush gives a new epoch.
func testRedisHistory(t *testing.T, be backend) {
	ctx := context.Background()
	hist := func(o *RedisOptions) { o.History = HistoryOptions{Size: 20, TTL: time.Minute} }
	ra, rb := newSeqRecorder(), newSeqRecorder()
	a := newBroker(t, be, "a", ra.record, hist)
	b := newBroker(t, be, "b", rb.record, hist)
	const session = "hist"
	ha, hb := a.History(), b.History()
	e1, err := epochOf(ha, session)
	if err != nil || e1 == "" {
		t.Fatalf("Epoch: %q %v", e1, err)
	}
	if e, _ := epochOf(hb, session); e != e1 {
		t.Fatalf("instances disagree on the epoch: %q %q", e1, e)
	}
	_ = a.Subscribe(session)
	_ = b.Subscribe(session)
	// Readiness: a message that both see.
	testenv.WaitFor(t, "subscriptions", 10*time.Second, func() bool {
		_ = a.Publish(session, []byte("probe"))
		time.Sleep(20 * time.Millisecond)
		sa, _ := ra.get(session)
		sb, _ := rb.get(session)
		return len(sa) > 0 && len(sb) > 0
	})
	sa, _ := ra.get(session)
	start := sa[len(sa)-1] + 1
	var wg sync.WaitGroup
	for i, br := range []*testBroker{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 100 {
				if !publishRetry(t, br, session, fmt.Sprintf(`{"p":%d,"n":%d}`, i, n)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	last := start + 199
	for name, r := range map[string]*seqRecorder{"a": ra, "b": rb} {
		testenv.WaitFor(t, name+" to receive everything", 10*time.Second, func() bool {
			s, _ := r.get(session)
			return len(s) > 0 && s[len(s)-1] >= last
		})
		seqs, _ := r.get(session)
		i := 0
		for seqs[i] < start {
			i++
		}
		checkSeqs(t, name, seqs[i:], start)
	}
	seqsA, msgsA := ra.get(session)
	seqsB, msgsB := rb.get(session)
	// Same seq, same message: compare the tails (early probes may differ).
	for i := 1; i <= 200; i++ {
		x, y := len(msgsA)-i, len(msgsB)-i
		if seqsA[x] != seqsB[y] || msgsA[x] != msgsB[y] {
			t.Fatalf("a and b disagree: %d %q, %d %q", seqsA[x], msgsA[x], seqsB[y], msgsB[y])
		}
	}
	rep, err := hb.Since(ctx, session, last-5)
	if err != nil || rep.Epoch != e1 || rep.Last != last || len(rep.Entries) != 5 {
		t.Fatalf("Since(last-5) = %+v, %v", rep, err)
	}
	for i, e := range rep.Entries {
		want := msgsA[len(msgsA)-5+i]
		if e.Seq != seqsA[len(seqsA)-5+i] || string(e.Payload) != want {
			t.Fatalf("entry %d: %d %q, want %q", i, e.Seq, e.Payload, want)
		}
	}
	if rep, _ := ha.Since(ctx, session, 0); len(rep.Entries) != 20 || rep.Entries[0].Seq != last-19 {
		t.Fatalf("history not trimmed to 20: %d entries from %d", len(rep.Entries), rep.Entries[0].Seq)
	}
	// A flush loses the history: new epoch, seq starts again.
	flushAll(t, be)
	e2, err := epochOf(ha, session)
	if err != nil || e2 == e1 || e2 == "" {
		t.Fatalf("epoch after FLUSHALL: %q (was %q), %v", e2, e1, err)
	}
	before := len(seqsA)
	if err := a.Publish(session, []byte(`{"after":1}`)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "message after the flush", 10*time.Second, func() bool { s, _ := ra.get(session); return len(s) > before })
	if s, _ := ra.get(session); s[before] != 1 {
		t.Fatalf("first seq after a flush = %d, want 1", s[before])
	}
	if rep, _ := hb.Since(ctx, session, 0); rep.Epoch != e2 || rep.Last != 1 {
		t.Fatalf("after the flush: %+v, want epoch %s last 1", rep, e2)
	}
}

func flushAll(t *testing.T, be backend) {
	t.Helper()
	c := newClient(t, be.addrs)
	for _, n := range c.Nodes() {
		if err := n.Do(context.Background(), n.B().Flushall().Build()).Error(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
	}
}

func TestEnvelopeV2(t *testing.T) {
	tests := []struct {
		in      string
		seq     uint64
		payload string
		ok      bool
	}{
		{"", 0, "", false},
		{"\x02", 0, "", false},
		{"\x021 {}", 1, "{}", true},
		{"\x0212345 x", 12345, "x", true},
		{"\x020 x", 0, "", false},
		{"\x0201 x", 0, "", false},
		{"\x02-1 x", 0, "", false},
		{"\x02 x", 0, "", false},
		{"\x0299999999999999999999 x", 0, "", false},
		{"\x011 x", 0, "", false},
	}
	for _, tt := range tests {
		seq, p, ok := decodeEnvelopeV2(tt.in)
		if seq != tt.seq || p != tt.payload || ok != tt.ok {
			t.Fatalf("decodeEnvelopeV2(%q) = %d %q %v", tt.in, seq, p, ok)
		}
	}
}

func FuzzDecodeEnvelopeV2(f *testing.F) {
	f.Add("\x021 {}")
	f.Add("\x0218446744073709551615 x")
	f.Fuzz(func(t *testing.T, s string) {
		seq, p, ok := decodeEnvelopeV2(s)
		if !ok {
			return
		}
		if got := string(encodeEnvelopeV2(seq, []byte(p))); got != s {
			t.Fatalf("re-encode %q != %q", got, s)
		}
	})
}

// epochOf reads a session's epoch (a since past any seq reads no entry).
func epochOf(h History, session string) (string, error) {
	rep, err := h.Since(context.Background(), session, 1<<62)
	return rep.Epoch, err
}

// With history on, a broadcast cannot be numbered while Redis is down: the
// sender is told (ErrUnavailable), and publishing works again by itself once
// Redis is back (with a new epoch: the restarted Redis kept nothing).
func TestRedisHistoryDown(t *testing.T) {
	r := testenv.StartRedis(t)
	be := backend{addrs: []string{r.Addr}}
	rec := newSeqRecorder()
	a := newBroker(t, be, "a", rec.record, func(o *RedisOptions) {
		o.History = HistoryOptions{Size: 10, TTL: time.Minute}
		o.Timeout = 300 * time.Millisecond
	})
	_ = a.Subscribe("d")
	testenv.WaitFor(t, "delivery", 10*time.Second, func() bool {
		_ = a.Publish("d", []byte(`{}`))
		time.Sleep(20 * time.Millisecond)
		s, _ := rec.get("d")
		return len(s) > 0
	})
	r.Stop()
	testenv.WaitFor(t, "ErrUnavailable while Redis is down", 10*time.Second, func() bool {
		err := a.Publish("d", []byte(`{}`))
		time.Sleep(10 * time.Millisecond)
		return errors.Is(err, ErrUnavailable)
	})
	r.Start()
	before, _ := rec.get("d")
	testenv.WaitFor(t, "publishing again after Redis is back", 10*time.Second, func() bool {
		if err := a.Publish("d", []byte(`{}`)); err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		s, _ := rec.get("d")
		return len(s) > len(before)
	})
}
