// Package centrifugo speaks the part of Centrifugo's JSON client protocol
// (v2, over WebSocket) that the peer benchmark needs — connect, subscribe,
// publish, presence, server pings — and writes the Centrifugo configuration
// the benchmark runs it with. It holds only pure functions: the driver owns
// the sockets.
//
// On the wire a WebSocket frame carries one or more JSON objects separated
// by '\n' (Centrifugo batches replies and pushes into one frame); a command
// is {"id":N,"<method>":{…}}, its reply {"id":N,"<method>":{…}} or
// {"id":N,"error":{"code":C,"message":"…"}}, a publication is
// {"push":{"channel":"…","pub":{"data":…}}}, and a server ping is {} which
// the client answers with {}.
package centrifugo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Version is the Centrifugo release the benchmark builds and is written for.
const Version = "v6.9.1"

// Path is Centrifugo's bidirectional WebSocket endpoint.
const Path = "/connection/websocket"

// HealthPath answers 200 when health.enabled is on.
const HealthPath = "/health"

// Settings are what the benchmark varies; everything else is fixed in
// Config and documented in docs/BENCHMARKS.md.
type Settings struct {
	// RedisAddress selects the Redis engine (several instances share
	// channels through it); empty means the memory engine.
	RedisAddress string
	// APIKey protects the server HTTP API, which the benchmark does not use
	// (Centrifugo refuses to start the API with neither a key nor insecure).
	APIKey string
}

// Config returns the JSON configuration file. Clients connect without a
// token as anonymous users (client.allow_anonymous_connect_without_token),
// the way wsedge's session protocol admits a client without credentials,
// and channels without a namespace let such clients subscribe, publish
// and read presence, which presence (the feature) is on for. The rest are
// Centrifugo's defaults, except the WebSocket write buffer pool, which its
// documentation recommends for many mostly-idle connections.
func Config(s Settings) ([]byte, error) {
	engine := map[string]any{"type": "memory"}
	if s.RedisAddress != "" {
		engine = map[string]any{"type": "redis", "redis": map[string]any{"address": []string{s.RedisAddress}}}
	}
	cfg := map[string]any{
		"log":         map[string]any{"level": "error"},
		"engine":      engine,
		"http_api":    map[string]any{"key": s.APIKey},
		"health":      map[string]any{"enabled": true},
		"prometheus":  map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true},
		"websocket":   map[string]any{"use_write_buffer_pool": true},
		"client": map[string]any{
			"allow_anonymous_connect_without_token": true,
		},
		"channel": map[string]any{
			"without_namespace": map[string]any{
				"presence":                      true,
				"allow_subscribe_for_anonymous": true,
				"allow_subscribe_for_client":    true,
				"allow_publish_for_anonymous":   true,
				"allow_publish_for_subscriber":  true,
				"allow_presence_for_anonymous":  true,
				"allow_presence_for_subscriber": true,
			},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("centrifugo config: %w", err)
	}
	return b, nil
}

// Command ids the benchmark uses; publishes use PublishID and up, so a
// reply can be told apart by its id alone.
const (
	ConnectID   = 1
	SubscribeID = 2
	PresenceID  = 3
	PublishID   = 4
)

// AppendConnectSubscribe appends one frame's payload holding a connect
// command and a subscribe to channel, batched as Centrifugo's clients may:
// the server handles them in order, so the subscribe runs once connected.
func AppendConnectSubscribe(b []byte, channel string) []byte {
	b = append(b, `{"id":1,"connect":{"name":"bench"}}`+"\n"+`{"id":2,"subscribe":{"channel":`...)
	b = strconv.AppendQuote(b, channel)
	return append(b, `}}`...)
}

// AppendPublish appends a publish of {"msg":msg} to channel with command id.
// msg must be JSON-safe without escaping (the benchmark's markers are).
func AppendPublish(b []byte, id uint32, channel string, msg []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, uint64(id), 10)
	b = append(b, `,"publish":{"channel":`...)
	b = strconv.AppendQuote(b, channel)
	b = append(b, `,"data":{"msg":"`...)
	b = append(b, msg...)
	return append(b, `"}}}`...)
}

// AppendPresence appends a presence request for channel.
func AppendPresence(b []byte, channel string) []byte {
	b = append(b, `{"id":3,"presence":{"channel":`...)
	b = strconv.AppendQuote(b, channel)
	return append(b, `}}`...)
}

// Pong is the client's answer to a server ping ({}).
var Pong = []byte(`{}`)

// Reply is the head of one message of a frame.
type Reply struct {
	ID uint32 `json:"id"`
	// Error is set on a failed command.
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	// Ping: the message was {} (answer with Pong).
	Ping bool `json:"-"`
	// Push: a message for a subscription (publication, join, leave, …).
	Push bool `json:"-"`
}

// ErrMalformed reports a message that is not a JSON object.
var ErrMalformed = errors.New("centrifugo: malformed message")

// Messages calls fn for each '\n'-separated message of a frame.
func Messages(frame []byte, fn func(msg []byte)) {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			fn(line)
		}
	}
}

// ParseReply reads the id and error of a reply, or marks a ping or a push.
// Pushes are recognised by their key without decoding their data, which is
// what a busy client sees most.
func ParseReply(msg []byte) (Reply, error) {
	m := bytes.TrimSpace(msg)
	if len(m) < 2 || m[0] != '{' || m[len(m)-1] != '}' {
		return Reply{}, ErrMalformed
	}
	if len(bytes.TrimSpace(m[1:len(m)-1])) == 0 {
		return Reply{Ping: true}, nil
	}
	if bytes.HasPrefix(m, []byte(`{"push":`)) {
		return Reply{Push: true}, nil
	}
	var r Reply
	if err := json.Unmarshal(m, &r); err != nil {
		return Reply{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return r, nil
}

// PresenceCount counts the clients in a presence reply
// ({"id":3,"presence":{"presence":{"<client id>":{"client":"…","user":"…"},…}}})
// by their "client" keys, so a reply of 5,000 members costs the client a
// scan, not a decode (wsedge's reply carries its count up front).
func PresenceCount(msg []byte) (int, error) {
	i := bytes.Index(msg, []byte(`"presence":{"presence":`))
	if i < 0 {
		if bytes.Contains(msg, []byte(`"presence":{}`)) {
			return 0, nil
		}
		return 0, fmt.Errorf("not a presence reply: %.100s", msg)
	}
	return bytes.Count(msg[i:], []byte(`"client":`)), nil
}
