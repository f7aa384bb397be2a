package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testbin"
	"github.com/ustack/ustack/internal/testprog"
)

// TestDelveRecipe runs scripts/delve.sh, the debugging recipe of
// docs/debugging.md: curl fetches 1 MiB under ustack run inside Delve,
// which must stop in netstack's TCP sender, print the connection's state
// and let the transfer finish intact.
func TestDelveRecipe(t *testing.T) {
	testbin.EndToEnd(t)
	for _, prog := range []string{"dlv", "curl"} {
		testprog.Need(t, prog)
	}
	body := make([]byte, 1<<20)
	var seed [32]byte
	rand.NewChaCha8(seed).Read(body)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	out := filepath.Join(t.TempDir(), "body")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/delve.sh", fmt.Sprintf("http://10.0.2.2:%d/", port), out)
	cmd.Env = cleanEnv("DELVE_BATCH=1")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("delve.sh: %v\n%s", err, log.String())
	}
	text := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(log.String(), "")
	for _, want := range []string{
		"> [tcpsend] gvisor.dev/gvisor/pkg/tcpip/transport/tcp.(*sender).sendData()",
		"tcp.(*Endpoint).sendData", // the backtrace
		fmt.Sprintf("RemotePort: %d,", port),
		"has exited with status 0",
		"curl: HTTP 200, 1048576 bytes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Delve's output lacks %q:\n%s", want, text)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(body) {
		t.Errorf("curl's body (%d bytes) differs from the server's", len(got))
	}
}
