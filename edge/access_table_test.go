package edge

import (
	"net/netip"
	"testing"
	"time"
)

// IPv6 clients are counted per /64; IPv4 per address.
func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":                "203.0.113.9",
		"2001:db8:1:2:aaaa::1":       "2001:db8:1:2::",
		"2001:db8:1:2:ffff:ffff::ff": "2001:db8:1:2::",
		"2001:db8:1:3::1":            "2001:db8:1:3::",
	} {
		if got := ipKey(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("ipKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// The table's rules without sockets: slots come back on release, idle
// entries with a full bucket are pruned, and a full table evicts an idle
// entry before refusing.
func TestIPTable(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tb := newIPTable(2, 1, 1, 2) // 2 entries, 1 socket each, 1/s burst 2
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	ea, _, _ := tb.admit(a, now)
	if ea == nil {
		t.Fatal("first connect refused")
	}
	if e, reason, _ := tb.admit(a, now); e != nil || reason != reasonIPConnections {
		t.Fatalf("second socket of a: %v %s", e, reason)
	}
	tb.release(ea)
	if ea, _, _ = tb.admit(a, now); ea == nil {
		t.Fatal("second token of the burst refused")
	}
	tb.release(ea)
	if e, reason, retry := tb.admit(a, now); e != nil || reason != reasonIPRate || retry != time.Second {
		t.Fatalf("third connect of a within the second: %v %s %v", e, reason, retry)
	}
	eb, _, _ := tb.admit(b, now)
	if eb == nil {
		t.Fatal("b refused")
	}
	// a is idle: a new address evicts it rather than being refused.
	if e, _, _ := tb.admit(c, now); e == nil || tb.size() != 2 {
		t.Fatalf("c with an idle entry to evict: %v, size %d", e, tb.size())
	}
	// b and c hold sockets: a fourth address is refused.
	if e, reason, _ := tb.admit(a, now); e != nil || reason != reasonIPTableFull {
		t.Fatalf("full table: %v %s", e, reason)
	}
	tb.release(eb)
	tb.prune(now.Add(time.Minute))
	if tb.size() != 1 {
		t.Fatalf("after prune: %d entries, want 1 (c still holds a socket)", tb.size())
	}
}
