// Command ustack runs a user-level TCP/IP stack; see 'ustack help'.
package main

import (
	"os"

	"ustack/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
