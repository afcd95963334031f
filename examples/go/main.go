// Command go is a wsedge session client: hello, one broadcast, then it prints every frame; it reconnects
// after a drain's hint (or a drop) and resumes from the last seq it saw (docs/PROTOCOL.md §1.7, §9).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8000/ws/session/demo/", "session URL")
	origin := flag.String("origin", "http://127.0.0.1:8000", "Origin header (checked when DEBUG=0)")
	flag.Parse()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {*origin}})}
	epoch, seq := "", int64(0) // where to resume; epoch stays "" while the server keeps no history
	greeting := []byte(`{"type":"broadcast","msg":"hello from go"}`)
	for attempt := 1; ; attempt++ {
		wait := time.Duration(rand.Int64N(int64(250*time.Millisecond) << min(attempt, 7))) // back-off, full jitter
		conn, _, _, err := d.Dial(context.Background(), *url)
		if err == nil {
			hello := map[string]any{"type": "hello", "user_type": "agent", "client_type": "go"}
			if epoch != "" {
				hello["since"], hello["epoch"] = seq, epoch // the server replays what we missed
			}
			b, _ := json.Marshal(hello)
			if err = wsutil.WriteClientText(conn, b); err == nil && greeting != nil {
				err, greeting = wsutil.WriteClientText(conn, greeting), nil // greet once, not on every reconnect
			}
		}
		for err == nil {
			var b []byte
			if b, err = wsutil.ReadServerText(conn); err != nil {
				break
			}
			fmt.Println(string(b))
			var f struct {
				Type, Epoch string
				Seq         int64
				AfterMS     int64 `json:"after_ms"`
			}
			_ = json.Unmarshal(b, &f)
			switch {
			case f.Type == "connected":
				epoch, attempt = cmp.Or(epoch, f.Epoch), 0 // keep the epoch we resume from
			case f.Type == "session_message" && f.Seq > 0:
				seq = f.Seq
			case f.Type == "recovery_failed" && f.Epoch != "":
				epoch, seq = f.Epoch, f.Seq // history was lost: a real client reloads its state here
			case f.Type == "reconnect":
				wait, attempt = time.Duration(f.AfterMS)*time.Millisecond, 0 // already jittered by the server
			}
		}
		if conn != nil {
			conn.Close()
		}
		if c, ok := errors.AsType[wsutil.ClosedError](err); ok && c.Code != 1001 && c.Code != 1011 && c.Code != 1013 {
			log.Fatalf("closed %d %q: retrying would fail the same way (PROTOCOL.md §9)", c.Code, c.Reason)
		}
		log.Printf("disconnected (%v); reconnecting in %v", err, wait)
		time.Sleep(wait)
	}
}
