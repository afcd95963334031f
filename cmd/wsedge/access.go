package main

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/internal/jointoken"
)

// rate parses a non-negative decimal number of events a second.
func (e env) rate(key string) (float64, error) {
	v, ok := e(key)
	if !ok || strings.TrimSpace(v) == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1e7 {
		return 0, fmt.Errorf("%s=%q: want a number of events a second between 0 and 10000000", key, v)
	}
	return f, nil
}

// loadAccessConfig fills the access-control part of ec and the join-token
// keys; the verifier itself is built by main (and once here, to report a
// bad key at start-up with the other configuration errors).
func loadAccessConfig(e env, ec *edge.Config) (jointoken.Config, error) {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var tc jointoken.Config
	tc.Secret = []byte(e.str("", "SESSION_TOKEN_SECRET"))
	if p := strings.TrimSpace(e.str("", "SESSION_TOKEN_PUBLIC_KEY")); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("SESSION_TOKEN_PUBLIC_KEY: %w", err))
		}
		tc.PublicKeyPEM = b
	}
	tc.Audience = strings.TrimSpace(e.str("", "SESSION_TOKEN_AUDIENCE"))
	if len(tc.Secret) > 0 || len(tc.PublicKeyPEM) > 0 {
		if _, err := jointoken.New(tc); err != nil {
			errs = append(errs, fmt.Errorf("SESSION_TOKEN_SECRET / SESSION_TOKEN_PUBLIC_KEY: %w", err))
		}
	}
	var err error
	ec.TokenExpiryGrace, err = e.duration(ec.TokenExpiryGrace, 100*time.Millisecond, time.Hour, "TOKEN_EXPIRY_GRACE")
	keep(err)
	for _, s := range strings.Split(e.str("", "TRUSTED_PROXIES"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR (e.g. 10.0.0.0/16) or an address", s))
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		ec.TrustedProxies = append(ec.TrustedProxies, p.Masked())
	}
	ec.MaxConnectionsPerIP, err = e.integer(0, 0, 10_000_000, "MAX_CONNECTIONS_PER_IP")
	keep(err)
	ec.ConnectRatePerIP, err = e.rate("CONNECT_RATE_PER_IP")
	keep(err)
	ec.ConnectBurstPerIP, err = e.integer(burstFor(ec.ConnectRatePerIP), 0, 10_000_000, "CONNECT_BURST_PER_IP")
	keep(err)
	ec.MaxTrackedIPs, err = e.integer(ec.MaxTrackedIPs, 1, 100_000_000, "MAX_TRACKED_IPS")
	keep(err)
	ec.MaxSessionMembers, err = e.integer(0, 0, 10_000_000, "MAX_SESSION_MEMBERS")
	keep(err)
	ec.SessionBroadcastRate, err = e.rate("SESSION_BROADCAST_RATE")
	keep(err)
	ec.SessionBroadcastBurst, err = e.integer(burstFor(ec.SessionBroadcastRate), 0, 10_000_000, "SESSION_BROADCAST_BURST")
	keep(err)
	return tc, errors.Join(errs...)
}

// burstFor is the default burst of a rate: one second's worth, at least 1
// (0 while the rate is off, as in edge.Defaults).
func burstFor(rate float64) int {
	if rate <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(rate)))
}
