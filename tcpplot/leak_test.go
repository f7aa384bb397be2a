package tcpplot_test

import (
	"os"
	"testing"

	"github.com/ustack/ustack/internal/leakcheck"
)

// TestMain fails the run if the tests leave netstack objects referenced.
func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
