// Command ustack runs a user-level TCP/IP stack; see 'ustack help'.
package main

import (
	"os"

	"github.com/ustack/ustack/cli"
	"github.com/ustack/ustack/intercept"
)

func main() {
	// 'ustack run' re-executes this binary to install its seccomp filter
	// before the program starts; that helper must do nothing else.
	if intercept.IsHelper() {
		intercept.HelperMain()
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
