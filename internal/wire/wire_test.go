package wire

import "testing"

func TestShapes(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{string(ErrorFrame("busy", `a "quoted" <msg>`)), `{"type":"error","error":"busy","message":"a \"quoted\" \u003cmsg\u003e"}`},
		{string(HTTPError("not_found", "no such route")), `{"error":"not_found","message":"no such route"}`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}
