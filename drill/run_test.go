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
	r := Run(path, "ustack", c, t.Logf)
	for _, l := range r.Log {
		t.Log(l)
	}
	t.Logf("status %s wall %v", r.Status(), r.Wall)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}
