package edge

import (
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Refused upgrades are logged at most refusalLogBurst at once and one a
// second after that: a client can open thousands of sockets a second with a
// bad Origin, and each log line is a write on the event loop.
const refusalLogBurst = 10

// Reasons an upgrade is refused and logged; also wsedge_rejected_total labels.
const (
	reasonOriginMissing    = "origin_missing"
	reasonOriginNotAllowed = "origin_not_allowed"
	reasonUnauthorized     = "unauthorized" // /ws/chat/ without the right API key
)

// maxLoggedOrigin caps the attacker-chosen Origin value written to the log.
const maxLoggedOrigin = 256

// originOK is the production Origin check of an upgrade (DEBUG=0): the
// Origin must match ALLOWED_HOSTS, or be absent with ALLOW_MISSING_ORIGIN.
// Refusals are counted and logged, rate-limited.
func (s *Server) originOK(c *conn, route uint8, origin []byte) bool {
	if originAllowed(string(origin), s.cfg.AllowedHosts) {
		return true
	}
	if len(origin) == 0 && s.cfg.AllowMissingOrigin {
		return true
	}
	// A valid join token is the other way past a missing or foreign Origin:
	// a page on another site cannot read it from the user's cookies.
	if c.acc != nil && c.acc.claims != nil {
		return true
	}
	reason := reasonOriginNotAllowed
	if len(origin) == 0 {
		reason = reasonOriginMissing
	}
	s.refuseUpgrade(c, route, reason, origin)
	return false
}

// refuseUpgrade counts and logs (rate-limited) an upgrade refused for
// reason; the caller answers the client. Credentials are never logged.
func (s *Server) refuseUpgrade(c *conn, route uint8, reason string, origin []byte) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	if len(origin) > maxLoggedOrigin {
		origin = origin[:maxLoggedOrigin]
	}
	remote := ""
	if len(s.cfg.TrustedProxies) > 0 {
		remote = s.clientIP(c).String()
	} else if a := c.gc.RemoteAddr(); a != nil {
		remote = a.String()
	}
	s.refusals.refused(reason, routeName(route), string(origin), remote)
}

// refusalLog writes one line per refused upgrade through a token bucket;
// refusals over the rate are counted, and the count is reported by the next
// line written (or by flush, once the flood is over), so that nothing goes
// unaccounted and the log stays bounded. Safe for every loop at once.
type refusalLog struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Uint64
}

func newRefusalLog(log *slog.Logger, burst int, every time.Duration) *refusalLog {
	return &refusalLog{log: log, lim: rate.NewLimiter(rate.Every(every), burst)}
}

func (r *refusalLog) refused(reason, route, origin, remote string) {
	if !r.lim.Allow() {
		r.suppressed.Add(1)
		return
	}
	r.log.Warn("websocket upgrade refused", "reason", reason, "route", route, "origin", origin,
		"remote", remote, "suppressed", r.suppressed.Swap(0))
}

// flush reports refusals suppressed since the last line; the sweeper calls
// it, so the tail of a flood is reported even when no refusal follows.
func (r *refusalLog) flush() {
	if r.suppressed.Load() == 0 || !r.lim.Allow() {
		return
	}
	if n := r.suppressed.Swap(0); n > 0 {
		r.log.Warn("websocket upgrades refused and not logged one by one", "suppressed", n)
	}
}
