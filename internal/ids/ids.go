// Package ids validates the session and thread ids of PROTOCOL.md (a thread
// id is a session id: chat turns are mirrored to /ws/session/<thread_id>/).
package ids

// Valid reports whether id is 1-128 characters of [A-Za-z0-9_.:-]. Such an
// id needs no escaping in JSON, URLs or Redis keys.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_', b == '.', b == ':', b == '-':
		default:
			return false
		}
	}
	return true
}
