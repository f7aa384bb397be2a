package drill

import (
	"os"
	"testing"

	"github.com/ustack/ustack/intercept"
)

// The test binary doubles as the launch helper and the executor.
func TestMain(m *testing.M) {
	if intercept.IsHelper() {
		intercept.HelperMain()
	}
	if IsExecutor() {
		ExecutorMain()
	}
	os.Exit(m.Run())
}
