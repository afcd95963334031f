package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// env reads configuration values. main builds it from os.LookupEnv; tests
// build it from a map. No other package reads the environment.
type env func(key string) (string, bool)

// first returns the value of the first key that is set, and which key it was.
func (e env) first(keys ...string) (string, string, bool) {
	for _, k := range keys {
		if v, ok := e(k); ok {
			return v, k, true
		}
	}
	return "", "", false
}

// str returns the first set key's value or def.
func (e env) str(def string, keys ...string) string {
	if v, _, ok := e.first(keys...); ok {
		return v
	}
	return def
}

// boolean parses 0/1/true/false/yes/no/on/off.
func (e env) boolean(def bool, keys ...string) (bool, error) {
	v, k, ok := e.first(keys...)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return def, fmt.Errorf("%s=%q: want 0 or 1 (or true/false)", k, v)
}

// integer parses a whole number within [lo, hi].
func (e env) integer(def, lo, hi int, keys ...string) (int, error) {
	v, k, ok := e.first(keys...)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return def, fmt.Errorf("%s=%q: not a whole number", k, v)
	}
	if n < lo || n > hi {
		return def, fmt.Errorf("%s=%d: must be between %d and %d", k, n, lo, hi)
	}
	return n, nil
}

// duration parses a Go duration ("30s", "1m") within [lo, hi].
func (e env) duration(def, lo, hi time.Duration, keys ...string) (time.Duration, error) {
	v, k, ok := e.first(keys...)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return def, fmt.Errorf("%s=%q: not a duration (examples: 30s, 1m, 500ms)", k, v)
	}
	if d < lo || d > hi {
		return def, fmt.Errorf("%s=%s: must be between %s and %s", k, d, lo, hi)
	}
	return d, nil
}

// size parses a byte count with an optional KiB/MiB suffix within [lo, hi].
func (e env) size(def, lo, hi int, keys ...string) (int, error) {
	v, k, ok := e.first(keys...)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	s := strings.TrimSpace(v)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def, fmt.Errorf("%s=%q: not a size (examples: 65536, 64KiB, 1MiB)", k, v)
	}
	// Check before multiplying: a huge count times a unit could wrap around
	// into the allowed range.
	if n < 0 || n > hi/mult {
		return def, fmt.Errorf("%s=%q: must be between %d and %d bytes", k, v, lo, hi)
	}
	n *= mult
	if n < lo || n > hi {
		return def, fmt.Errorf("%s=%d: must be between %d and %d bytes", k, n, lo, hi)
	}
	return n, nil
}
