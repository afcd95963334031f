package presence

import (
	"strconv"
	"unicode/utf8"
)

// appendMembersJSON appends ms as a JSON array, byte for byte what
// encoding/json's Marshal writes for []Member (HTML-safe escaping included),
// without reflection: for a 5,000-member presence answer it is several times
// faster, which matters because encoding, not the store, dominated that
// round trip.
func appendMembersJSON(dst []byte, ms []Member) []byte {
	if ms == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendMemberJSON(dst, &ms[i])
	}
	return append(dst, ']')
}

// AppendMemberJSON appends one member as a JSON object, as appendMembersJSON
// does, for callers that stop at a byte budget.
func AppendMemberJSON(dst []byte, m *Member) []byte {
	dst = append(dst, `{"connection_id":`...)
	dst = appendJSONString(dst, m.ConnectionID)
	dst = append(dst, `,"user_type":`...)
	dst = appendJSONString(dst, m.UserType)
	dst = append(dst, `,"client_type":`...)
	dst = appendJSONString(dst, m.ClientType)
	dst = append(dst, `,"connected_at":`...)
	dst = strconv.AppendInt(dst, m.ConnectedAt, 10)
	dst = append(dst, `,"last_seen":`...)
	dst = strconv.AppendInt(dst, m.LastSeen, 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s the way encoding/json does with HTML escaping:
// \" \\ \n \r \t \b \f, other control bytes and <, >, & as \u00XX, U+2028 and
// U+2029 escaped, invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Fast path: ids and types are plain ASCII that needs no escaping.
	plain := 0
	for plain < len(s) && jsonPlain[s[plain]] {
		plain++
	}
	if plain == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonPlain marks the bytes encoding/json copies as they are: ASCII from
// 0x20 up, but for '"', '\\' and the HTML-sensitive '<', '>', '&'.
var jsonPlain = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()
