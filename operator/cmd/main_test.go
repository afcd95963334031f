package main

import (
	"flag"
	"strings"
	"testing"
)

// Every flag's help states its real default as "(default X)", and bad
// values are refused.
func TestFlagsHelpDefaults(t *testing.T) {
	c, err := parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.leaderElect || c.podConcurrency != 16 || c.podTimeout.String() != "2s" || c.namespace != "" {
		t.Fatalf("defaults %+v", c)
	}
	if _, err := parse([]string{"-nope"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"-pod-timeout=0s"}},
		{[]string{"-pod-concurrency=0"}},
	} {
		if _, err := parse(tc.args); err == nil {
			t.Errorf("%v accepted", tc.args)
		}
	}
	set := flags(&config{})
	set.VisitAll(func(f *flag.Flag) {
		want := "(default " + f.DefValue + ")"
		if f.DefValue == "" {
			want = `(default "")`
		}
		if !strings.Contains(f.Usage, want) {
			t.Errorf("-%s: help %q does not state %s", f.Name, f.Usage, want)
		}
	})
}
