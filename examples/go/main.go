// Command go is a wsedge session client: hello, one broadcast, print frames until it comes back (docs/PROTOCOL.md §1).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8000/ws/session/demo/", "session URL")
	origin := flag.String("origin", "http://127.0.0.1:8000", "Origin header (checked when DEBUG=0)")
	flag.Parse()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {*origin}})}
	conn, _, _, err := d.Dial(context.Background(), *url)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{`{"type":"hello","user_type":"agent","client_type":"go"}`, `{"type":"broadcast","msg":"hello from go"}`} {
		if err := wsutil.WriteClientText(conn, []byte(m)); err != nil {
			log.Fatal(err)
		}
	}
	for {
		b, err := wsutil.ReadServerText(conn)
		if err != nil {
			log.Fatal(err) // a reconnecting client would wait the reconnect frame's after_ms here
		}
		fmt.Println(string(b))
		var f struct{ Type, Msg string }
		if json.Unmarshal(b, &f) == nil && f.Type == "session_message" && f.Msg == "hello from go" {
			return
		}
	}
}
