package edge

import (
	"strconv"
	"testing"

	"github.com/wsedge/wsedge/edge/presence"
)

func BenchmarkPresenceFrame5000(b *testing.B) {
	ms := make([]presence.Member, 5000)
	for i := range ms {
		ms[i] = presence.Member{ConnectionID: "0123456789abcdef0123456789abcd" + strconv.Itoa(i%100), UserType: "admin", ClientType: "web", ConnectedAt: 1700000000, LastSeen: 1700000030}
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		_, buf = presenceFrame(buf, "s", ms, len(ms), 1<<30)
	}
}
