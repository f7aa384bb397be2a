// Command httpprog is the statically linked Go program (CGO_ENABLED=0, so
// its name lookups and sockets are Go's own, made by raw system calls) that
// the programs tests run under 'ustack run' as an HTTP client and server.
//
//	httpprog get URL OUT    GET URL into the file OUT; retries refused connections for 30 s (the server may be starting)
//	httpprog serve ADDR FILE  serve FILE at every path; print "listening A" once listening
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fail(errors.New("usage: httpprog get URL OUT | httpprog serve ADDR FILE"))
	}
	switch os.Args[1] {
	case "get":
		get(os.Args[2], os.Args[3])
	case "serve":
		serve(os.Args[2], os.Args[3])
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "httpprog:", err)
	os.Exit(1)
}

func get(url, out string) {
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err = http.Get(url)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("%s: %s", url, resp.Status))
	}
	f, err := os.Create(out)
	if err != nil {
		fail(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
}

func serve(addr, file string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening %v\n", l.Addr())
	fail(http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, file)
	})))
}
