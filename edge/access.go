package edge

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/apikey"
	"github.com/wsedge/wsedge/internal/jointoken"
	"github.com/wsedge/wsedge/internal/wire"
)

// Close codes of access control (PROTOCOL.md §1, SECURITY.md).
const (
	closeTokenExpired ws.StatusCode = 4003
)

// Reasons an upgrade is refused by access control; wsedge_rejected_total
// labels (never per IP).
const (
	reasonIPConnections  = "ip_connections"
	reasonIPRate         = "ip_rate"
	reasonIPTableFull    = "ip_table_full"
	reasonToken          = "token"
	reasonSessionFull    = "session_full"
	reasonSessionRate    = "session_broadcast_rate"
	reasonReservedHello  = "reserved_identity"
	reasonIdentityHello  = "identity_mismatch"
	reasonTokenExpiredWS = "token_expired"
)

// ipEvictScan bounds the entries looked at to find an idle one to evict when
// the per-IP table is full.
const ipEvictScan = 64

// access is the access-control state of one socket, allocated only when a
// token or a limit is configured: without them a socket pays one nil pointer.
type access struct {
	claims    *jointoken.Claims // the verified join token; nil without one
	expiredAt int64             // token_expired sent at (Unix ns); 0: not yet
	ip        *ipEntry          // held connection slot of the client IP
	sess      *sessEntry        // counted member of this session
}

// accessOn reports whether any access-control feature is configured.
func (s *Server) accessOn() bool {
	cfg := &s.cfg
	return s.tokens != nil || cfg.MaxConnectionsPerIP > 0 || cfg.ConnectRatePerIP > 0 ||
		cfg.MaxSessionMembers > 0 || cfg.SessionBroadcastRate > 0
}

// admit applies per-IP limits, join tokens and the member cap to an upgrade,
// cheapest first, so that a flood is refused before any signature is
// checked. On refusal it answers the client and returns false.
func (s *Server) admit(c *conn, route uint8, session string) bool {
	if !s.accessOn() {
		return true
	}
	if c.acc == nil {
		c.acc = &access{}
	}
	now := time.Now()
	if (s.cfg.MaxConnectionsPerIP > 0 || s.cfg.ConnectRatePerIP > 0) && c.acc.ip == nil {
		e, reason, retry := s.ips.admit(s.clientIP(c), now)
		if e == nil {
			s.refuseUpgrade(c, route, reason, c.ls.hdr.Peek("Origin"))
			s.replyRetry(c, reason, retry)
			return false
		}
		c.acc.ip = e
	}
	// On /ws/chat/ a token is optional (the API key still admits), and its
	// sid is checked per thread_id by the chat service (chat.ThreadGuard).
	tok := ""
	if s.tokens != nil {
		tok = bearer(c)
	}
	if s.tokens != nil && (route == routeSession || tok != "") {
		claims, err := s.tokens.Verify(tok)
		if route == routeChat {
			// The API key also travels as a Bearer value: a chat upgrade
			// whose key matches is admitted, as without tokens.
			if err == nil {
				c.acc.claims = claims
				return true
			}
			if apikey.Match(s.cfg.AuthAPIKey, c.ls.hdr.Peek("Authorization"), c.ls.uri.QueryArgs().Peek("authorization")) {
				return true
			}
		}
		if err == nil && !claims.Covers(session) {
			err = &jointoken.Error{Reason: jointoken.ReasonWrongSession, Err: errNotCovered}
		}
		if err != nil {
			reason := jointoken.ReasonMalformed
			if e, ok := err.(*jointoken.Error); ok {
				reason = e.Reason
			}
			s.refuseUpgrade(c, route, reasonToken, c.ls.hdr.Peek("Origin"))
			s.replyError(c, "ws", fasthttp.StatusUnauthorized, reason, tokenMessage(reason), true)
			return false
		}
		// A session socket needs its sid list no more (a refresh brings
		// its own): keep the per-connection claims small.
		claims.SIDs = nil
		c.acc.claims = claims
	}
	if route == routeSession && (s.cfg.MaxSessionMembers > 0 || s.cfg.SessionBroadcastRate > 0) && c.acc.sess == nil {
		e := s.sessions.join(session, s.cfg.MaxSessionMembers)
		if e == nil {
			s.refuseUpgrade(c, route, reasonSessionFull, c.ls.hdr.Peek("Origin"))
			s.replyError(c, "ws", fasthttp.StatusForbidden, "session_full",
				"this session has its maximum number of members; try again later", true)
			return false
		}
		c.acc.sess = e
	}
	return true
}

var errNotCovered = jsonErr("the token's sid does not cover this session")

type jsonErr string

func (e jsonErr) Error() string { return string(e) }

func tokenMessage(reason string) string {
	switch reason {
	case jointoken.ReasonMissing:
		return "a join token is required: ?token=<jwt> or Authorization: Bearer <jwt>"
	case jointoken.ReasonExpired:
		return "the join token has expired"
	case jointoken.ReasonNotYetValid:
		return "the join token is not valid yet (nbf)"
	case jointoken.ReasonWrongSession:
		return "the join token's sid does not cover this session"
	case jointoken.ReasonAlgorithm:
		return "the join token's alg is not accepted"
	case jointoken.ReasonSignature:
		return "the join token's signature does not verify"
	case jointoken.ReasonAudience:
		return "the join token's aud does not name this service"
	case jointoken.ReasonMalformed:
		return "the join token is not a JWT"
	}
	return "the join token's claims are invalid (sid, user_type and exp are required)"
}

// bearer returns the token of ?token= or of Authorization: Bearer.
func bearer(c *conn) string {
	if t := c.ls.uri.QueryArgs().Peek("token"); len(t) > 0 {
		return string(t)
	}
	return jointoken.FromAuthorization(c.ls.hdr.Peek("Authorization"))
}

// replyRetry answers 429 with Retry-After (whole seconds, at least 1).
func (s *Server) replyRetry(c *conn, reason string, retry time.Duration) {
	code, msg := "too_many_requests", "too many connections from your address; retry later"
	if reason == reasonIPTableFull {
		code, msg = "server_busy", "too many distinct clients right now; retry later"
	}
	secs := int64((retry + time.Second - 1) / time.Second)
	ls := c.ls
	resp := &ls.resp
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusTooManyRequests)
	resp.Header.SetContentType("application/json")
	resp.Header.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	resp.SetBodyRaw(wire.HTTPError(code, msg))
	resp.SetConnectionClose()
	c.closeTCP = true
	ls.out.Reset()
	_, _ = resp.WriteTo(&ls.out)
	_, _ = c.gc.Write(ls.out.Bytes())
	s.metrics.httpRequests.WithLabelValues("ws", "429").Inc()
}

// releaseAccess gives back what the socket held; OnClose calls it.
func (s *Server) releaseAccess(c *conn) {
	if c.acc.ip != nil {
		s.ips.release(c.acc.ip)
		c.acc.ip = nil
	}
	if c.acc.sess != nil {
		s.sessions.leave(c.acc.sess)
		c.acc.sess = nil
	}
}

// checkHello enforces the token's identity and the reserved identities; it
// returns the error code and message to refuse the hello with, or "".
func (s *Server) checkHello(c *conn, userType, clientType string, clientTypeSet bool) (code, msg, ct string) {
	ct = clientType
	if c.acc != nil && c.acc.claims != nil {
		cl := c.acc.claims
		if userType != cl.UserType || (cl.ClientType != "" && clientTypeSet && clientType != "" && clientType != cl.ClientType) {
			s.metrics.rejected.WithLabelValues(reasonIdentityHello).Inc()
			return "identity_mismatch", "hello user_type and client_type must match the join token", ""
		}
		if cl.ClientType != "" {
			ct = cl.ClientType
		}
	}
	if ct == "" {
		ct = "unknown"
	}
	if s.openChat != nil && ct == reservedClientType {
		s.metrics.rejected.WithLabelValues(reasonReservedHello).Inc()
		return "identity_reserved", `client_type "chat" is reserved for frames the server sends`, ""
	}
	return "", "", ct
}

// reservedClientType marks the session_message frames of the chat mirror
// (chat/mirror.go); no client may claim it while chat is served.
const reservedClientType = "chat"

// onRefresh handles {"type":"refresh","token":…} on a token-admitted
// session socket; it reports false when msg is not a refresh.
func (s *Server) onRefresh(c *conn, m clientMessage, msg []byte) bool {
	if c.acc == nil || c.acc.claims == nil || string(m.Type) != `"refresh"` {
		return false
	}
	var r struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(msg, &r)
	s.refresh(c, r.Token)
	return true
}

// onChatRefresh is onRefresh for a /ws/chat/ socket opened under a token:
// the refresh is the edge's, the chat service never sees it. Other chat
// messages pay one substring search.
func (s *Server) onChatRefresh(c *conn, msg []byte) bool {
	if c.acc == nil || c.acc.claims == nil || !bytes.Contains(msg, []byte(`"refresh"`)) {
		return false
	}
	var r struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(msg, &r) != nil || r.Type != "refresh" {
		return false
	}
	s.refresh(c, r.Token)
	return true
}

// refresh replaces c's token with tok when it verifies and keeps the
// identity (user_type, client_type, sub) and, on a session socket, covers
// the session. A chat socket takes the new token's sid list: it decides
// which threads the socket may continue from now on.
func (s *Server) refresh(c *conn, tok string) {
	claims, err := s.tokens.Verify(tok)
	if err == nil && ((c.route == routeSession && !claims.Covers(c.session)) || !claims.SameIdentity(c.acc.claims)) {
		err = &jointoken.Error{Reason: jointoken.ReasonWrongSession, Err: errNotCovered}
	}
	if err != nil {
		reason := jointoken.ReasonMalformed
		if e, ok := err.(*jointoken.Error); ok {
			reason = e.Reason
		}
		c.send(errorFrame("refresh_refused", reason+": "+tokenMessage(reason)))
		return
	}
	if c.route == routeSession {
		claims.SIDs = nil
	}
	c.acc.claims, c.acc.expiredAt = claims, 0
	c.send(wsframe.Text([]byte(`{"type":"refreshed","exp":` + strconv.FormatInt(claims.Expires.Unix(), 10) + `}`)))
}

// sweepToken runs from the sweeper: a socket (session, or chat opened under
// a token) whose token has expired gets token_expired once, and close 4003
// after TokenExpiryGrace unless a refresh arrived.
func (s *Server) sweepToken(c *conn, now int64) {
	cl := c.acc.claims
	switch {
	case c.acc.expiredAt == 0 && now >= cl.Expires.UnixNano():
		c.acc.expiredAt = now
		c.send(wsframe.Text([]byte(`{"type":"token_expired"}`)))
	case c.acc.expiredAt != 0 && now-c.acc.expiredAt >= int64(s.cfg.TokenExpiryGrace):
		s.metrics.rejected.WithLabelValues(reasonTokenExpiredWS).Inc()
		c.closeWS(closeTokenExpired, "token expired", false)
	}
}

// allowBroadcast applies the per-session broadcast rate.
func (s *Server) allowBroadcast(c *conn) bool {
	if c.acc == nil || c.acc.sess == nil || s.cfg.SessionBroadcastRate <= 0 {
		return true
	}
	if s.sessions.allow(c.acc.sess, time.Now(), s.cfg.SessionBroadcastRate, float64(s.cfg.SessionBroadcastBurst)) {
		return true
	}
	s.metrics.rejected.WithLabelValues(reasonSessionRate).Inc()
	if c.lastRx-c.limitedAt >= int64(time.Second) {
		c.limitedAt = c.lastRx
		c.send(errorFrame("rate_limited", "this session is over its broadcast rate; this message was dropped"))
	}
	return false
}

// clientIP is the address limits and logs use: the peer, or, when the peer
// is a trusted proxy, the first untrusted address of X-Forwarded-For read
// right to left.
func (s *Server) clientIP(c *conn) netip.Addr {
	var peer netip.Addr
	if a, ok := c.gc.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort().Addr().Unmap()
	}
	if len(s.cfg.TrustedProxies) == 0 || !trusted(s.cfg.TrustedProxies, peer) {
		return peer
	}
	ip := peer
	// Header names are normalized when parsed (readHead), so any case
	// matches; every X-Forwarded-For line counts, in order.
	hs := c.ls.hdr.PeekAll("X-Forwarded-For")
	for i := len(hs) - 1; i >= 0; i-- {
		parts := strings.Split(string(hs[i]), ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip // garbage left of a trusted hop: the hop is the client we know
			}
			ip = a.Unmap()
			if !trusted(s.cfg.TrustedProxies, ip) {
				return ip
			}
		}
	}
	return ip
}

func trusted(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipKey groups IPv6 clients by /64, the block one host is usually given, so
// that one host cannot dodge the limits by cycling addresses.
func ipKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// ipTable counts open WebSockets and connect tokens per client IP, for all
// loops. It holds at most max entries: an entry with no open socket is
// dropped by prune once its bucket is full again (it then carries no
// state), or evicted early when the table is full, which forgives that
// address its recent connects. When every entry looked at holds sockets,
// the new address is refused (429, ip_table_full).
type ipTable struct {
	mu      sync.Mutex
	m       map[netip.Addr]*ipEntry
	max     int
	maxConn int
	rate    float64 // tokens a second; 0: no rate limit
	burst   float64
}

type ipEntry struct {
	addr   netip.Addr
	conns  int
	tokens float64
	at     time.Time
}

func newIPTable(maxEntries, maxConn int, rate float64, burst int) *ipTable {
	return &ipTable{m: map[netip.Addr]*ipEntry{}, max: maxEntries, maxConn: maxConn, rate: rate, burst: float64(burst)}
}

// admit takes a connect token and a connection slot for a; on refusal it
// returns nil, the reason and when to retry.
func (t *ipTable) admit(a netip.Addr, now time.Time) (*ipEntry, string, time.Duration) {
	k := ipKey(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[k]
	if e == nil {
		if len(t.m) >= t.max && !t.evictOne() {
			return nil, reasonIPTableFull, time.Second
		}
		e = &ipEntry{addr: k, tokens: t.burst, at: now}
		t.m[k] = e
	}
	if t.rate > 0 {
		e.tokens = min(t.burst, e.tokens+now.Sub(e.at).Seconds()*t.rate)
		e.at = now
		if e.tokens < 1 {
			return nil, reasonIPRate, time.Duration((1 - e.tokens) / t.rate * float64(time.Second))
		}
	}
	if t.maxConn > 0 && e.conns >= t.maxConn {
		return nil, reasonIPConnections, time.Second
	}
	e.tokens--
	e.conns++
	return e, "", 0
}

func (t *ipTable) evictOne() bool {
	n := 0
	for k, e := range t.m {
		if e.conns == 0 {
			delete(t.m, k)
			return true
		}
		if n++; n >= ipEvictScan {
			break
		}
	}
	return false
}

func (t *ipTable) release(e *ipEntry) {
	t.mu.Lock()
	e.conns--
	t.mu.Unlock()
}

// prune drops entries with no socket and a full bucket; the sweeper runs it.
func (t *ipTable) prune(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.m {
		if e.conns == 0 && (t.rate <= 0 || e.tokens+now.Sub(e.at).Seconds()*t.rate >= t.burst) {
			delete(t.m, k)
		}
	}
}

func (t *ipTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// sessionTable counts the session sockets of this instance per session id
// and holds each session's broadcast bucket. Entries live while a socket
// holds them, so the table is bounded by MaxConnections.
type sessionTable struct {
	mu sync.Mutex
	m  map[string]*sessEntry
}

type sessEntry struct {
	id      string
	members int
	tokens  float64
	at      time.Time
	fresh   bool
}

func newSessionTable() *sessionTable { return &sessionTable{m: map[string]*sessEntry{}} }

// join counts a member; nil when the session already has limit (>0).
func (t *sessionTable) join(id string, limit int) *sessEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil {
		e = &sessEntry{id: id, fresh: true}
		t.m[id] = e
	}
	if limit > 0 && e.members >= limit {
		return nil
	}
	e.members++
	return e
}

func (t *sessionTable) leave(e *sessEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.members--; e.members <= 0 {
		delete(t.m, e.id)
	}
}

func (t *sessionTable) allow(e *sessEntry, now time.Time, rate, burst float64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.fresh {
		e.tokens, e.at, e.fresh = burst, now, false
	}
	e.tokens = min(burst, e.tokens+now.Sub(e.at).Seconds()*rate)
	e.at = now
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// MayContinue implements chat.ThreadGuard: with join tokens on, a chat
// socket continues a thread only under a token whose sid covers it.
func (s *chatSink) MayContinue(thread string) bool {
	c := s.c
	if c.ls.srv.tokens == nil {
		return true
	}
	return c.acc != nil && c.acc.claims != nil && c.acc.claims.Covers(thread) &&
		time.Now().Before(c.acc.claims.Expires)
}

// Owner implements chat.ThreadGuard: new threads are bound to the token's sub.
func (s *chatSink) Owner() string {
	c := s.c
	if c.acc == nil || c.acc.claims == nil {
		return ""
	}
	return c.acc.claims.Subject
}

// hasToken reports whether the upgrade carried a valid join token, which
// stands in for the API key on /ws/chat/.
func (c *conn) hasToken() bool { return c.acc != nil && c.acc.claims != nil }
