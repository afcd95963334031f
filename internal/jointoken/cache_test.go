package jointoken

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The cache never changes an answer: a cached token still expires at its
// exp, is re-verified after the TTL, a token differing by one byte is
// verified in full, failures are not remembered, and callers get their own
// copy of the claims.
func TestVerifyCache(t *testing.T) {
	base := time.Now()
	exp := base.Add(10 * time.Minute)
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sid": []string{"a", "b*"}, "user_type": "agent", "exp": exp.Unix(), "sub": "u"})
	short := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sid": "a", "user_type": "agent", "exp": base.Add(30 * time.Second).Unix()})
	// The last character of the signature changed: its low bits may be
	// padding, so flip a character in the middle of it.
	i := strings.LastIndexByte(good, '.') + 10
	tampered := good[:i] + map[bool]string{true: "A", false: "B"}[good[i] != 'A'] + good[i+1:]
	for _, tc := range []struct {
		name   string
		steps  []string        // tokens verified in order
		at     []time.Duration // clock (from base) at each step
		reason []string        // "" = accepted
		hits   []bool          // answered from the cache
	}{
		{"same token again is a hit", []string{good, good}, []time.Duration{0, time.Second}, []string{"", ""}, []bool{false, true}},
		{"re-verified after the TTL", []string{good, good, good}, []time.Duration{0, cacheTTL - time.Millisecond, cacheTTL}, []string{"", "", ""}, []bool{false, true, false}},
		{"expires at exp even when cached", []string{short, short, short}, []time.Duration{0, 29 * time.Second, 31 * time.Second}, []string{"", "", ReasonExpired}, []bool{false, true, false}},
		{"a changed byte is verified in full", []string{good, tampered}, []time.Duration{0, time.Second}, []string{"", ReasonSignature}, []bool{false, false}},
		{"failures are not remembered", []string{tampered, tampered}, []time.Duration{0, time.Second}, []string{ReasonSignature, ReasonSignature}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(Config{Secret: secret})
			if err != nil {
				t.Fatal(err)
			}
			for i, tok := range tc.steps {
				now := base.Add(tc.at[i])
				v.now = func() time.Time { return now }
				_, hit := v.cache.get(tok, now)
				c, err := v.Verify(tok)
				reason := ""
				if err != nil {
					reason = err.(*Error).Reason
				}
				if reason != tc.reason[i] || hit != tc.hits[i] {
					t.Fatalf("step %d: reason %q hit %v, want %q %v (%v)", i, reason, hit, tc.reason[i], tc.hits[i], err)
				}
				if c != nil {
					c.SIDs, c.UserType = nil, "changed by the caller"
				}
			}
			if c, err := v.Verify(tc.steps[0]); err == nil && (c.UserType != "agent" || len(c.SIDs) == 0) {
				t.Fatalf("a caller's change reached the cache: %+v", c)
			}
		})
	}
}

// The cache holds at most its count and byte bounds, dropping the oldest
// first, whatever is thrown at it.
func TestTokenCacheBounds(t *testing.T) {
	now := time.Now()
	cl := func(sids int) *Claims {
		c := &Claims{UserType: "agent", Expires: now.Add(time.Hour)}
		for i := range sids {
			c.SIDs = append(c.SIDs, fmt.Sprintf("session-%d", i))
		}
		return c
	}
	for _, tc := range []struct {
		name           string
		maxN, maxBytes int
		puts, sids     int
		tokLen         int
	}{
		{"count bound", 100, 1 << 20, 1000, 1, 200},
		{"byte bound", 100_000, 64 << 10, 1000, 1, 1000},
		{"big sid lists", 100_000, 64 << 10, 1000, 64, 200},
		{"re-inserting the same tokens", 50, 1 << 20, 5000, 1, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTokenCache(tc.maxN, tc.maxBytes, time.Minute)
			keys := tc.puts
			if strings.HasPrefix(tc.name, "re-inserting") {
				keys = 80
			}
			for i := range tc.puts {
				tok := fmt.Sprintf("%0*d", tc.tokLen, i%keys)
				c.put(tok, cl(tc.sids), now)
				if n, b := c.len(); n > tc.maxN || b > tc.maxBytes {
					t.Fatalf("after %d puts: %d entries, %d bytes; bounds %d, %d", i+1, n, b, tc.maxN, tc.maxBytes)
				}
				if _, ok := c.get(tok, now); !ok {
					t.Fatalf("the newest token %d is not cached", i)
				}
			}
			if n := len(c.fifo) - c.head; n > 2*tc.maxN+16 {
				t.Fatalf("eviction queue holds %d items for at most %d entries", n, tc.maxN)
			}
			// The oldest went first: the first token is gone.
			if _, ok := c.get(fmt.Sprintf("%0*d", tc.tokLen, 0), now); ok && keys == tc.puts {
				t.Fatal("the oldest token is still cached")
			}
		})
	}
}
