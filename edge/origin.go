package edge

import (
	"net"
	"net/url"
	"strings"
)

// originAllowed applies Django's ALLOWED_HOSTS rules to a WebSocket Origin, as
// Channels' AllowedHostsOriginValidator does: "*" allows anything (even a
// missing Origin); ".example.com" allows the domain and its subdomains; any
// other pattern must equal the origin's host, and its port if it names one.
func originAllowed(origin string, allowed []string) bool {
	for _, p := range allowed {
		if p == "*" {
			return true
		}
	}
	if origin == "" || origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	for _, p := range allowed {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		pHost, pPort := p, ""
		if h, pp, err := net.SplitHostPort(p); err == nil {
			pHost, pPort = h, pp
		}
		pHost = strings.TrimSuffix(strings.TrimPrefix(pHost, "["), "]")
		if pPort != "" && pPort != port {
			continue
		}
		if sameDomain(host, pHost) {
			return true
		}
	}
	return false
}

// sameDomain is Django's is_same_domain.
func sameDomain(host, pattern string) bool {
	if pattern == "" {
		return false
	}
	if pattern[0] == '.' {
		return strings.HasSuffix(host, pattern) || host == pattern[1:]
	}
	return host == pattern
}
