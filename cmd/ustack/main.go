// Command ustack runs a user-level TCP/IP stack; see 'ustack help'.
package main

import (
	"os"

	"github.com/ustack/ustack/cli"
	"github.com/ustack/ustack/drill"
	"github.com/ustack/ustack/intercept"
)

func main() {
	// 'ustack run' re-executes this binary to install its seccomp filter
	// before the program starts; that helper must do nothing else.
	if intercept.IsHelper() {
		intercept.HelperMain()
	}
	// 'ustack drill' re-executes this binary to make a script's system
	// calls; that executor must do nothing else either.
	if drill.IsExecutor() {
		drill.ExecutorMain()
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
