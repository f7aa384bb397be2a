package serve_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/serve"
)

// The test binary doubles as the launch helper of the programs it runs.
func TestMain(m *testing.M) {
	if intercept.IsHelper() {
		intercept.HelperMain()
	}
	os.Exit(m.Run())
}

// fixture is a served stack (10.0.9.1, fd09::1) joined to a peer stack
// (10.0.9.2, fd09::2), and a client of the served one.
type fixture struct {
	served *serve.Stack
	peer   *ustack.Stack
	client *control.Client
	close  func() // closes the served stack; also done at cleanup
}

// newFixture serves one end of a pair as the stack called name, in a
// runtime directory of the test's own. The log goes to cfg.Logf, or to
// the test's.
func newFixture(t testing.TB, name string, cfg serve.Config) *fixture {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	srv, err := control.Listen(name, cfg.Logf)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	s := serve.New(srv, a, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	closeServed := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(closeServed)
	return &fixture{served: s, peer: b, client: control.Dial(name), close: closeServed}
}

// checksumServer answers every connection on the peer with the SHA-256 of
// what it read until the client's half-close.
func checksumServer(t *testing.T, st *ustack.Stack, addr string) {
	t.Helper()
	ln, err := st.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				c.Write(h.Sum(nil))
			}()
		}
	}()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestConnect: a CONNECT tunnel carries a request both ways through the
// served stack, and the client's half-close reaches the peer, which only
// answers after it.
func TestConnect(t *testing.T) {
	f := newFixture(t, "tunnel", serve.Config{Command: "daemon"})
	checksumServer(t, f.peer, ":7000")
	for _, addr := range []string{"10.0.9.2:7000", "[fd09::2]:7000"} {
		t.Run(addr, func(t *testing.T) {
			ctx := ctxFor(t, 30*time.Second)
			conn, err := f.client.Connect(ctx, "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			data := make([]byte, 4<<20)
			for i := range data {
				data[i] = byte(rand.Uint32())
			}
			written := make(chan error, 1)
			go func() {
				_, err := conn.Write(data)
				if err == nil {
					err = conn.(interface{ CloseWrite() error }).CloseWrite()
				}
				written <- err
			}()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-written; err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(data)
			if !bytes.Equal(got, want[:]) {
				t.Fatalf("the peer's checksum %x, want %x", got, want)
			}
		})
	}
}

func TestConnectErrors(t *testing.T) {
	f := newFixture(t, "tunnel", serve.Config{Command: "daemon"})
	ctx := ctxFor(t, 30*time.Second)
	_, err := f.client.Connect(ctx, "tcp", "10.0.9.2:7001")
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("CONNECT to a closed port: %v, want connection refused", err)
	}
	var oe *net.OpError
	if _, err := f.client.Connect(ctx, "udp", "10.0.9.2:53"); !errors.As(err, &oe) {
		t.Errorf("CONNECT for udp: %v, want a *net.OpError", err)
	}
	var nr *control.NotRunningError
	if _, err := control.Dial("nosuch").Connect(ctx, "tcp", "10.0.9.2:7000"); !errors.As(err, &nr) {
		t.Errorf("CONNECT through no stack: %v, want a NotRunningError", err)
	}
}

// TestCloseEndsTunnels: closing the served stack closes the tunnels it
// holds open, so their clients see the end.
func TestCloseEndsTunnels(t *testing.T) {
	f := newFixture(t, "tunnel", serve.Config{Command: "daemon"})
	ln, err := f.peer.Listen("tcp", ":7002")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // held open, silent
		}
	}()
	conn, err := f.client.Connect(ctxFor(t, 30*time.Second), "tcp", "10.0.9.2:7002")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peerEnd := <-accepted
	defer peerEnd.Close()
	f.close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on a tunnel of a closed stack: %v, want its end", err)
	}
}

// TestInfo: GET /v1/info tells the stack's identity and counts its open
// connections.
func TestInfo(t *testing.T) {
	f := newFixture(t, "lab1", serve.Config{Command: "daemon", Version: "v9.9.9"})
	ctx := ctxFor(t, 30*time.Second)
	info, err := f.client.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Info{Name: "lab1", PID: os.Getpid(), Command: "daemon", Attachment: f.served.Info().Attachment,
		Addresses: []string{"10.0.9.1/24", "fd09::1/64"}, MTU: f.served.Info().MTU,
		Socket: control.SocketPath("lab1"), Version: "v9.9.9"}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("info %+v\nwant %+v", info, want)
	}

	checksumServer(t, f.peer, ":7000")
	conn, err := f.client.Connect(ctx, "tcp", "10.0.9.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if info, err = f.client.Info(ctx); err != nil || info.Connections != 1 {
		t.Errorf("with a tunnel open: %d connections (%v), want 1", info.Connections, err)
	}
}

// TestMetrics: Config.Metrics serves the counters for Prometheus, and
// Close closes its listener even when the stack was never served.
func TestMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newFixture(t, "metered", serve.Config{Command: "run", Metrics: ln})
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `ustack_tcp_active_connection_openings_total{stack="metered"}`) {
		t.Errorf("GET /metrics: %s\n%s", resp.Status, body)
	}

	t.Run("never served", func(t *testing.T) {
		t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a, b, err := ustack.NewPair(ustack.Config{}, ustack.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		srv, err := control.Listen("unserved", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		if err := serve.New(srv, a, serve.Config{Metrics: ln}).Close(); err != nil {
			t.Fatal(err)
		}
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Error("the metrics port still takes connections after Close")
		}
		if _, err := os.Stat(control.SocketPath("unserved")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the control socket after Close: %v", err)
		}
	})
}
