//go:build !amd64

package intercept

import (
	"errors"

	"golang.org/x/sys/unix"
)

// buildFilter knows only x86_64's system call numbers so far.
func buildFilter() ([]unix.SockFilter, error) {
	return nil, errors.New("ustack run supports only linux/amd64 so far")
}
