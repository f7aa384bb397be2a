package growstack

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// TestGrowConcurrent: Grow is called from many goroutines at once (the
// race run checks that they share nothing) and allocates nothing.
func TestGrowConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Grow()
		}()
	}
	wg.Wait()
	if n := testing.AllocsPerRun(100, Grow); n != 0 {
		t.Errorf("Grow allocates %v times per call, want 0", n)
	}
}

// TestAsmFrameIsSize: the assembly grow's frame is Size bytes.
func TestAsmFrameIsSize(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("grow is in assembly on amd64 only, not on %s", runtime.GOARCH)
	}
	src, err := os.ReadFile("grow_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`TEXT ·grow\(SB\), 0, \$(\d+)-0`).FindSubmatch(src)
	if m == nil {
		t.Fatal("grow_amd64.s: no TEXT line for grow")
	}
	if frame, _ := strconv.Atoi(string(m[1])); frame != Size {
		t.Errorf("grow's frame is %d bytes, Size is %d", frame, Size)
	}
}

// deep recurses through n frames of 512 bytes, as netstack's send path
// goes deep.
//
//go:noinline
func deep(n int) byte {
	var b [512]byte
	if n == 0 {
		return b[0]
	}
	return deep(n-1) + b[n%512]
}

// BenchmarkGoroutine: a goroutine that goes 20 KiB deep, with and
// without Grow at its start (go test -bench Goroutine ./internal/growstack).
func BenchmarkGoroutine(b *testing.B) {
	for _, bb := range []struct {
		name string
		grow func()
	}{{"plain", func() {}}, {"grow", Grow}} {
		b.Run(bb.name, func(b *testing.B) {
			var wg sync.WaitGroup
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bb.grow()
					deep(40)
				}()
				wg.Wait()
			}
		})
	}
}
