package main

import (
	"math"
	"strings"
	"testing"
)

func TestGCHeapFloorConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []string
		want int
		err  string
	}{
		{name: "local model: off", want: 0},
		{name: "Bedrock: 256 MiB", kv: []string{"BEDROCK_MODEL_ID_CHAT", "m"}, want: 256 << 20},
		{name: "Bedrock, turned off", kv: []string{"BEDROCK_MODEL_ID_CHAT", "m", "GC_HEAP_FLOOR", "0"}, want: 0},
		{name: "explicit", kv: []string{"GC_HEAP_FLOOR", "64MiB"}, want: 64 << 20},
		{name: "not a size", kv: []string{"GC_HEAP_FLOOR", "lots"}, err: "GC_HEAP_FLOOR"},
		{name: "negative", kv: []string{"GC_HEAP_FLOOR", "-1"}, err: "GC_HEAP_FLOOR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := cfgProd(tc.kv...)
			if tc.err != "" {
				if msg := cfgLoadErr(t, m); !strings.Contains(msg, tc.err) {
					t.Fatalf("error %q does not name %s", msg, tc.err)
				}
				return
			}
			if got := cfgLoad(t, m).GCHeapFloor; got != tc.want {
				t.Fatalf("GCHeapFloor = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestHeapFloorUnderMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		floor    int
		limit    int64
		expected int64
	}{
		{floor: 256 << 20, limit: math.MaxInt64, expected: 256 << 20}, // no GOMEMLIMIT
		{floor: 256 << 20, limit: 1 << 30, expected: 256 << 20},
		{floor: 256 << 20, limit: 256 << 20, expected: 128 << 20}, // half the limit at most
		{floor: 0, limit: 1 << 30, expected: 0},
	} {
		if got := heapFloor(tc.floor, tc.limit); got != tc.expected {
			t.Errorf("heapFloor(%d, %d) = %d, want %d", tc.floor, tc.limit, got, tc.expected)
		}
	}
}
