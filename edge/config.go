// Package edge is wsedge's network edge: one gnet v2 event-loop engine that
// speaks HTTP/1.1 and WebSocket (RFC 6455) on one port, routes requests, runs
// the session protocol and fans broadcasts out to local sockets.
//
// Nothing here blocks an event loop: presence queries, the HTTP API and chat
// turns run on bounded goroutine pools and come back through each loop's
// mailbox (see loop.go).
package edge

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is the edge's typed configuration; cmd/wsedge fills it from flags and
// the environment.
type Config struct {
	// Addr is the TCP address of the HTTP/WebSocket listener.
	Addr string
	// EventLoops is the number of gnet event loops (0: one per CPU).
	EventLoops int
	// InstanceID names this process in logs and presence.
	InstanceID string
	// Debug skips the Origin check, as the original's DEBUG=1 did.
	Debug bool
	// AllowedHosts holds Django ALLOWED_HOSTS patterns for the Origin check.
	AllowedHosts []string
	// AllowMissingOrigin lets upgrades without an Origin header through the
	// Origin check (native clients send none; browsers always do). A present
	// but unlisted Origin is still refused.
	AllowMissingOrigin bool
	// Console serves the built-in browser console at /console/ (docs/PROTOCOL.md
	// §Console). Off by default: it is a debugging aid, not an API.
	Console bool
	// AuthAPIKey, when set, guards the /ws/chat/ upgrade.
	AuthAPIKey string

	// MaxMessageSize caps an incoming message (all fragments); over it: 1009.
	MaxMessageSize int
	// OutboundCap caps the bytes queued for one socket; over it: 1013.
	OutboundCap int
	// MessageRate caps the messages one socket may send per second (0: no
	// cap), with bursts up to MessageBurst; over it a message is dropped and
	// the client told rate_limited, so one busy client cannot monopolise its
	// event loop or flood a session.
	MessageRate  int
	MessageBurst int
	// ByteRate caps the payload bytes one socket may send per second (0: no
	// cap), with bursts up to ByteBurst (at least MaxMessageSize); over it,
	// as over MessageRate, the message is dropped and rate_limited answered.
	ByteRate  int
	ByteBurst int
	// PresenceMaxMembers caps the members (and distinct client types) in one
	// presence answer; a larger session gets the first ones and
	// "truncated":true. It sizes the largest answer, hence OutboundCap's floor.
	PresenceMaxMembers int
	// MaxConnections caps open sockets (HTTP and WebSocket together).
	MaxConnections int
	// ReadyMaxConnections (0: off) makes /ready/ fail once this many
	// WebSockets are open, so Kubernetes sends new sockets to other pods
	// before this one reaches MaxConnections; open sockets stay.
	ReadyMaxConnections int
	// MaxHeaderBytes caps an HTTP request head; over it: 431.
	MaxHeaderBytes int
	// MaxBodyBytes caps an HTTP request body; over it: 413. Only the API
	// takes bodies, so main sets it from CHAT_API_MAX_BODY.
	MaxBodyBytes int

	// HelloTimeout: a session socket that sends no hello in time is closed 4001.
	HelloTimeout time.Duration
	// FrameTimeout: a frame, and a fragmented message, must be received
	// whole within it from its first byte, else close 1008. It is well under
	// PongTimeout because trickled bytes keep a socket "alive".
	FrameTimeout time.Duration
	// PingInterval: a socket silent this long is pinged.
	PingInterval time.Duration
	// PongTimeout: a pinged socket silent this long after the ping is dropped.
	PongTimeout time.Duration
	// WriteTimeout: a socket that accepts no bytes for this long is closed.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the time to receive a whole HTTP request.
	HandshakeTimeout time.Duration
	// HTTPIdleTimeout closes idle keep-alive HTTP connections. It should
	// exceed the load balancer's idle timeout (ALB: 60 s).
	HTTPIdleTimeout time.Duration
	// CloseTimeout bounds the wait for a client's close frame after ours.
	CloseTimeout time.Duration
	// SweepInterval is how often each loop checks its sockets' deadlines.
	SweepInterval time.Duration

	// PresenceTimeout bounds one presence query.
	PresenceTimeout time.Duration
	// PresenceConcurrency caps presence queries in flight; over it the client
	// gets presence_unavailable at once.
	PresenceConcurrency int
	// APIConcurrency caps HTTP API requests in flight; over it: 503.
	APIConcurrency int
	// APITimeout bounds one HTTP API request: the client is answered 503
	// and the handler's context ends (CHAT_API_TIMEOUT).
	APITimeout time.Duration
	// HistoryTimeout bounds one session history read (epoch or replay).
	HistoryTimeout time.Duration
	// HistoryConcurrency caps history reads in flight; HistoryBacklog caps
	// those waiting. Over the backlog a connect gets no epoch and a resume
	// gets recovery_failed "unavailable".
	HistoryConcurrency int
	HistoryBacklog     int

	// DrainTimeout bounds graceful shutdown.
	DrainTimeout time.Duration
	// DrainSpread spreads the closing of sockets over this long, so that
	// clients do not all reconnect at once.
	DrainSpread time.Duration
	// ReconnectJitter is the upper bound of the after_ms hint sent to clients.
	ReconnectJitter time.Duration

	// Access control (SECURITY.md). Zero values turn each feature off.

	// TokenExpiryGrace: a socket whose join token expires gets
	// token_expired, and close 4003 this long after unless it refreshes.
	TokenExpiryGrace time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxConnectionsPerIP caps the WebSockets open per client IP (IPv6: /64).
	MaxConnectionsPerIP int
	// ConnectRatePerIP is the upgrades a second per client IP, in bursts of
	// up to ConnectBurstPerIP.
	ConnectRatePerIP  float64
	ConnectBurstPerIP int
	// MaxTrackedIPs caps the per-IP table.
	MaxTrackedIPs int
	// MaxSessionMembers caps the session sockets of one session id on this
	// instance; over it the upgrade gets 403.
	MaxSessionMembers int
	// SessionBroadcastRate caps the broadcasts a second of one session on
	// this instance, all senders together, in bursts of up to
	// SessionBroadcastBurst.
	SessionBroadcastRate  float64
	SessionBroadcastBurst int

	// MailboxCap and MailboxMaxBytes cap each event loop's mailbox (items,
	// and bytes of the frames in them). Broadcasts and chat tokens over the
	// cap are refused and their sockets closed 1013 with a reconnect hint
	// (see loopState in loop.go).
	MailboxCap      int
	MailboxMaxBytes int
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Addr:                "0.0.0.0:8000",
		MaxMessageSize:      1 << 20,
		OutboundCap:         2 << 20,
		MessageRate:         1000,
		MessageBurst:        2000,
		ByteRate:            1 << 20,
		ByteBurst:           2 << 20,
		PresenceMaxMembers:  1000,
		FrameTimeout:        10 * time.Second,
		MaxConnections:      100_000,
		MaxHeaderBytes:      8 << 10,
		MaxBodyBytes:        64 << 10,
		HelloTimeout:        30 * time.Second,
		PingInterval:        20 * time.Second,
		PongTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		HandshakeTimeout:    10 * time.Second,
		HTTPIdleTimeout:     75 * time.Second,
		CloseTimeout:        5 * time.Second,
		SweepInterval:       time.Second,
		PresenceTimeout:     2 * time.Second,
		PresenceConcurrency: 512,
		APIConcurrency:      256,
		APITimeout:          2 * time.Minute,
		HistoryTimeout:      2 * time.Second,
		HistoryConcurrency:  64,
		HistoryBacklog:      10000,
		DrainTimeout:        30 * time.Second,
		DrainSpread:         5 * time.Second,
		ReconnectJitter:     5 * time.Second,
		TokenExpiryGrace:    30 * time.Second,
		MaxTrackedIPs:       100_000,
		MailboxCap:          1 << 16,
		MailboxMaxBytes:     64 << 20,
	}
}

// Validate reports the first inconsistency in c.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("listen address is empty"))
	}
	if c.MaxMessageSize < 125 {
		errs = append(errs, errors.New("max message size must be at least 125 bytes"))
	}
	if c.PresenceMaxMembers < 1 || c.PresenceMaxMembers > MaxPresenceMembers {
		errs = append(errs, fmt.Errorf("presence max members must be 1 to %d", MaxPresenceMembers))
	} else if c.MaxMessageSize >= 125 && c.MaxMessageSize <= maxMessageSizeLimit && c.OutboundCap < c.MinOutboundCap() {
		errs = append(errs, fmt.Errorf("outbound cap %d is below %d bytes, the largest frame the server sends for one request "+
			"(an echo of a max-size message, or a presence answer of %d members)", c.OutboundCap, c.MinOutboundCap(), c.PresenceMaxMembers))
	}
	if c.MaxMessageSize > maxMessageSizeLimit {
		errs = append(errs, fmt.Errorf("max message size must be at most %d bytes", maxMessageSizeLimit))
	}
	if c.MessageRate < 0 || (c.MessageRate > 0 && c.MessageBurst < 1) {
		errs = append(errs, errors.New("message rate must not be negative, and its burst must be at least 1"))
	}
	if c.ByteRate < 0 || (c.ByteRate > 0 && (c.ByteBurst < c.MaxMessageSize || c.ByteBurst > 1<<30)) {
		errs = append(errs, errors.New("byte rate must not be negative, and its burst must be at least the max message size and at most 1 GiB"))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, errors.New("max connections must be at least 1"))
	}
	if c.ReadyMaxConnections < 0 || c.ReadyMaxConnections > c.MaxConnections {
		errs = append(errs, errors.New("ready max connections must be between 0 (off) and max connections"))
	}
	if c.MaxHeaderBytes < 512 || c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("header limit must be at least 512 bytes and body limit non-negative"))
	}
	if c.HistoryConcurrency < 1 || c.HistoryBacklog < 1 {
		errs = append(errs, errors.New("history concurrency and backlog must be at least 1"))
	}
	pos("history timeout", c.HistoryTimeout)
	if c.PresenceConcurrency < 1 || c.APIConcurrency < 1 {
		errs = append(errs, errors.New("presence and API concurrency must be at least 1"))
	}
	pos("hello timeout", c.HelloTimeout)
	pos("frame timeout", c.FrameTimeout)
	pos("ping interval", c.PingInterval)
	pos("pong timeout", c.PongTimeout)
	pos("write timeout", c.WriteTimeout)
	pos("handshake timeout", c.HandshakeTimeout)
	pos("HTTP idle timeout", c.HTTPIdleTimeout)
	pos("close timeout", c.CloseTimeout)
	pos("sweep interval", c.SweepInterval)
	pos("presence timeout", c.PresenceTimeout)
	pos("API timeout", c.APITimeout)
	pos("drain timeout", c.DrainTimeout)
	if c.DrainSpread < 0 || c.ReconnectJitter < 0 {
		errs = append(errs, errors.New("drain spread and reconnect jitter must not be negative"))
	}
	if c.MaxConnectionsPerIP < 0 || c.ConnectRatePerIP < 0 || c.MaxSessionMembers < 0 || c.SessionBroadcastRate < 0 {
		errs = append(errs, errors.New("per-IP and per-session limits must not be negative"))
	}
	if (c.ConnectRatePerIP > 0 && c.ConnectBurstPerIP < 1) || (c.SessionBroadcastRate > 0 && c.SessionBroadcastBurst < 1) {
		errs = append(errs, errors.New("a rate limit needs a burst of at least 1"))
	}
	if c.MaxTrackedIPs < 1 {
		errs = append(errs, errors.New("max tracked IPs must be at least 1"))
	}
	pos("token expiry grace", c.TokenExpiryGrace)
	if c.MailboxCap < 1 || c.MailboxMaxBytes < c.MaxMessageSize+16 {
		errs = append(errs, errors.New("loop mailbox cap must be at least 1 item, and its byte cap at least one max-size frame"))
	}
	return errors.Join(errs...)
}

// Bounds that keep the size arithmetic below far from overflow.
const (
	maxMessageSizeLimit = 1 << 30
	// MaxPresenceMembers is the highest PresenceMaxMembers accepted.
	MaxPresenceMembers = 100_000
)

// Worst-case sizes of what the server sends for one request, with user_type
// and client_type at their 64-byte limit and every byte escaped as \u00XX.
const (
	// dataFrameOverhead covers the envelope around a client's message (an
	// echo, or a session_message with the sender's types) and the frame
	// header.
	dataFrameOverhead = 1024
	// presenceFixed: the frame header, session id and the fixed fields.
	presenceFixed = 512
	// presenceMemberMax: one member object (32-hex id, two escaped types,
	// two times) plus one by_type entry.
	presenceMemberMax = 1024 + 416
)

// PresenceAnswerMax is the byte budget of one presence answer: members are
// left out ("truncated":true) rather than exceed it.
func (c Config) PresenceAnswerMax() int {
	return presenceFixed + c.PresenceMaxMembers*presenceMemberMax
}

// MinOutboundCap is the floor of OutboundCap: the largest frame the server
// produces for one request (an echo or broadcast of a MaxMessageSize message,
// or a full presence answer), plus room for the small frames around it (an
// error or close frame). A cap below it would close the client that asked.
func (c Config) MinOutboundCap() int {
	return max(c.MaxMessageSize+dataFrameOverhead, c.PresenceAnswerMax()) + 4096
}
