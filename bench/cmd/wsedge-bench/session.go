package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/wsedge/wsedge/bench/internal/centrifugo"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/wsclient"
)

// protocol is how the driver speaks to one kind of server: wsedge and the
// baseline speak the session protocol (docs/PROTOCOL.md §1), Centrifugo its
// own JSON protocol. Every scenario measures the same operations through it.
type protocol interface {
	// join connects to addr, joins session and returns once the server
	// counts the socket as a member (wsedge: hello sent after connected;
	// Centrifugo: the subscribe reply).
	join(ctx context.Context, addr, session string, localIP net.IP, timeout time.Duration) (*wsclient.Client, error)
	// appendBroadcast appends a frame sending msg to every member of session.
	appendBroadcast(b []byte, session string, seq uint32, msg []byte) []byte
	// askPresence asks for session's members and returns how many there are.
	askPresence(c *wsclient.Client, session string, timeout time.Duration) (int, error)
	// answer returns what the client must reply to a frame at the
	// application level (Centrifugo's ping), or nil.
	answer(frame []byte) []byte
}

// server is a running target and the protocol it speaks.
type server struct {
	*proc.Target
	proto protocol
}

func protocolFor(name string) protocol {
	if name == "centrifugo" {
		return centrifugoProto{}
	}
	return sessionProto{}
}

// sessionProto is the session protocol of wsedge and the baseline.
type sessionProto struct{}

// helloFrame is what every benchmark connection says first.
var helloFrame = []byte(`{"type":"hello","user_type":"bench","client_type":"bench"}`)

func (sessionProto) join(ctx context.Context, addr, session string, localIP net.IP, timeout time.Duration) (*wsclient.Client, error) {
	c, err := wsclient.Dial(ctx, "ws://"+addr+"/ws/session/"+session+"/", localIP, timeout)
	if err != nil {
		return nil, err
	}
	p, err := c.NextText(timeout)
	if err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("read connected: %w", err)
	}
	if !bytes.Contains(p, []byte(`"connected"`)) {
		c.Conn().Close()
		return nil, fmt.Errorf("first frame is not connected: %.100s", p)
	}
	if err := c.WriteText(helloFrame); err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("send hello: %w", err)
	}
	return c, nil
}

func (sessionProto) appendBroadcast(b []byte, _ string, _ uint32, msg []byte) []byte {
	b = append(b, `{"type":"broadcast","msg":"`...)
	b = append(b, msg...)
	return append(b, `"}`...)
}

func (sessionProto) askPresence(c *wsclient.Client, _ string, timeout time.Duration) (int, error) {
	if err := c.WriteText([]byte(`{"type":"presence"}`)); err != nil {
		return 0, fmt.Errorf("presence: %w", err)
	}
	for {
		p, err := c.NextText(timeout)
		if err != nil {
			return 0, fmt.Errorf("presence reply: %w", err)
		}
		if n, ok, err := presenceHead(p); ok {
			return n, err
		}
	}
}

// presenceHead reads the count of a presence answer from its head, which
// the session protocol writes before the members: the client then spends
// as little on a 5,000-member answer as on Centrifugo's (whose clients it
// counts with one scan), so the round trip measures the servers.
func presenceHead(p []byte) (count int, ok bool, err error) {
	head := p[:min(len(p), 300)]
	if !bytes.HasPrefix(head, []byte(`{"type":"presence"`)) {
		return 0, false, nil
	}
	_, rest, found := bytes.Cut(head, []byte(`"count":`))
	if !found {
		return 0, true, fmt.Errorf("presence answer without count: %.100s", head)
	}
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, true, fmt.Errorf("presence answer with a malformed count: %.100s", head)
	}
	n, err := strconv.Atoi(string(rest[:end]))
	if err != nil {
		return 0, true, fmt.Errorf("presence count: %w", err)
	}
	return n, true, nil
}

func (sessionProto) answer([]byte) []byte { return nil }

// centrifugoProto is Centrifugo's JSON protocol over WebSocket; a session
// is a channel.
type centrifugoProto struct{}

func (centrifugoProto) join(ctx context.Context, addr, session string, localIP net.IP, timeout time.Duration) (*wsclient.Client, error) {
	c, err := wsclient.Dial(ctx, "ws://"+addr+centrifugo.Path, localIP, timeout)
	if err != nil {
		return nil, err
	}
	if err := c.WriteText(centrifugo.AppendConnectSubscribe(nil, session)); err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("send connect: %w", err)
	}
	if _, err := awaitReply(c, centrifugo.SubscribeID, timeout, nil); err != nil {
		c.Conn().Close()
		return nil, fmt.Errorf("connect+subscribe: %w", err)
	}
	return c, nil
}

func (centrifugoProto) appendBroadcast(b []byte, session string, seq uint32, msg []byte) []byte {
	return centrifugo.AppendPublish(b, centrifugo.PublishID+seq, session, msg)
}

func (centrifugoProto) askPresence(c *wsclient.Client, session string, timeout time.Duration) (int, error) {
	if err := c.WriteText(centrifugo.AppendPresence(nil, session)); err != nil {
		return 0, fmt.Errorf("presence: %w", err)
	}
	n := 0
	_, err := awaitReply(c, centrifugo.PresenceID, timeout, func(msg []byte) error {
		var err error
		n, err = centrifugo.PresenceCount(msg)
		return err
	})
	return n, err
}

func (centrifugoProto) answer(frame []byte) []byte {
	ping := false
	centrifugo.Messages(frame, func(m []byte) {
		if string(bytes.TrimSpace(m)) == "{}" {
			ping = true
		}
	})
	if ping {
		return centrifugo.Pong
	}
	return nil
}

// awaitReply reads frames until the reply with id arrives, answering pings
// and skipping pushes and other replies; a failed command is an error. With
// onReply set, the reply's message is handed to it (valid only meanwhile).
func awaitReply(c *wsclient.Client, id uint32, timeout time.Duration, onReply func([]byte) error) (bool, error) {
	for {
		p, err := c.NextText(timeout)
		if err != nil {
			return false, err
		}
		var done bool
		var ferr error
		pong := false
		centrifugo.Messages(p, func(m []byte) {
			if done || ferr != nil {
				return
			}
			r, err := centrifugo.ParseReply(m)
			switch {
			case err != nil:
				ferr = err
			case r.Ping:
				pong = true
			case r.Push:
			case r.Error != nil && (r.ID == id || r.ID == centrifugo.ConnectID):
				ferr = fmt.Errorf("command %d: error %d %s", r.ID, r.Error.Code, r.Error.Message)
			case r.ID == id:
				done = true
				if onReply != nil {
					ferr = onReply(m)
				}
			}
		})
		if pong {
			if err := c.WriteText(centrifugo.Pong); err != nil {
				return false, err
			}
		}
		if ferr != nil {
			return false, ferr
		}
		if done {
			return true, nil
		}
	}
}

// appendMarker appends the msg of a benchmark broadcast:
// "wsb:<sender>:<seq>:<unix nanos at send>".
func appendMarker(b []byte, sender int, seq int64) []byte {
	b = append(b, "wsb:"...)
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ':')
	return strconv.AppendInt(b, time.Now().UnixNano(), 10)
}
