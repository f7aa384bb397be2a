package drill

import (
	"os"
	"testing"
)

func TestOne(t *testing.T) {
	path := os.Getenv("DRILL_SCRIPT")
	if path == "" {
		t.Skip("DRILL_SCRIPT not set")
	}
	c := DefaultConfig()
	c.Verbose = true
	target := os.Getenv("DRILL_TARGET")
	if target == "" {
		target = "ustack"
	}
	r := Run(path, target, c, t.Logf)
	for _, l := range r.Log {
		t.Log(l)
	}
	t.Logf("status %s wall %v", r.Status(), r.Wall)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}
