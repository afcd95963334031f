// Package apikey checks the API key the original server took in an
// Authorization header ("<key>" or "Bearer <key>") or an authorization query
// value; both the WebSocket upgrade and the HTTP API use it.
package apikey

import (
	"bytes"
	"crypto/subtle"
)

// Match reports whether header or query carries key, in constant time for a
// given length. An empty key means none is required.
func Match(key string, header, query []byte) bool {
	if key == "" {
		return true
	}
	ok := false
	for _, v := range [][]byte{header, query} {
		v = bytes.TrimSpace(v)
		if len(v) > 7 && bytes.EqualFold(v[:7], []byte("bearer ")) {
			v = bytes.TrimSpace(v[7:])
		}
		// Both values are always compared, so timing does not tell which matched.
		if len(v) > 0 && subtle.ConstantTimeCompare(v, []byte(key)) == 1 {
			ok = true
		}
	}
	return ok
}
