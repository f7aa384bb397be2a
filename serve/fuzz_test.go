package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ustack/ustack/control"
	"github.com/ustack/ustack/serve"
)

// controlSeeds are requests to a daemon's control socket: every endpoint
// with good and malformed parameters (ping's query, trace's filter and
// duration, capture's NIC and snaplen), the attach handshake without a
// listener, CONNECT targets, and malformed HTTP.
var controlSeeds = []string{
	"GET /v1/info HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/sockets?info=1 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/stats HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /metrics HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/runtime?gc=1 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&count=1&interval=0.2&timeout=1s&size=56 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=fd09::2&count=2&interval=1ms&timeout=1ms&size=0 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&count=three HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&size=1.5 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&size=70000 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&interval=1e300 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&interval=NaN&timeout=-1 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=10.0.9.2&count=-1 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?count=1 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/ping?host=%zz HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/trace?filter=10.0.9.2:80&duration=1s HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/trace?filter=:99999 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/trace?filter=[::1]:x&duration=-1s HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/trace?duration=1e400h HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"POST /v1/trace/stop?id=nope HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n",
	"GET /v1/capture?nic=eth0&snaplen=64 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/capture?snaplen=0 HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/capture?nic=nope&snaplen=abc HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"POST /v1/attach HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n",
	"POST /v1/attach HTTP/1.1\r\nHost: ustack\r\nContent-Length: 0\r\n\r\n\x00",
	"POST /v1/attach HTTP/1.1\r\nHost: ustack\r\nContent-Length: 5\r\n\r\nhello",
	"GET /v1/attach HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"CONNECT 10.0.9.2:1 HTTP/1.1\r\nHost: 10.0.9.2:1\r\n\r\n",
	"CONNECT [fd09::2]:80 HTTP/1.1\r\nHost: [fd09::2]:80\r\n\r\n",
	"CONNECT :0 HTTP/1.1\r\nHost: :0\r\n\r\n",
	"CONNECT no-port HTTP/1.1\r\nHost: no-port\r\n\r\n",
	"GET /v1/nothing HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET //v1/info/../info HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"DELETE /v1/info HTTP/1.1\r\nHost: ustack\r\n\r\n",
	"GET /v1/info HTTP/1.1\r\n\r\n",
	"GET /v1/info HTTP/9.9\r\nHost: ustack\r\n\r\n",
	"GET /v1/info HTTP/1.1\r\nHost: ustack\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	"GET /v1/info HTTP/1.1\r\nHost: ustack\r\nX: " + strings.Repeat("a", 4096) + "\r\n\r\n",
	"\x00\xff\r\n\r\n",
	"",
}

// panicLog catches net/http's report of a handler that panicked (it
// recovers, logs and drops the connection).
type panicLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (p *panicLog) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *panicLog) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.buf.String()
	p.buf.Reset()
	return s
}

// FuzzControlRequest sends arbitrary bytes as a request on the control
// socket of a real served stack, one that takes programs, as a daemon's
// does. Whatever comes, no handler panics, no answer is 500 Internal
// Server Error (a 4xx says what was wrong with the request; 502 is for
// hosts the stack cannot reach), and the stack still answers afterwards.
func FuzzControlRequest(f *testing.F) {
	for _, s := range controlSeeds {
		f.Add([]byte(s))
	}
	caught := &panicLog{}
	log.SetOutput(caught)
	f.Cleanup(func() { log.SetOutput(os.Stderr) })
	fx := newFixture(f, "fuzz", serve.Config{Command: "daemon", Attach: true, Logf: func(string, ...any) {}})

	f.Fuzz(func(t *testing.T, req []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := control.DialSocket(ctx, fx.client.Socket)
		if err != nil {
			t.Fatal(err)
		}
		// A request may legitimately wait (a stream, a CONNECT to a host
		// that does not answer): the answer is read for a moment only.
		conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
		conn.Write(req)
		conn.(*net.UnixConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			if resp.StatusCode == http.StatusInternalServerError {
				t.Errorf("%q: answered %s", req, resp.Status)
			}
		}
		conn.Close()
		if _, err := fx.client.Info(ctx); err != nil {
			t.Fatalf("after %q the stack does not answer: %v", req, err)
		}
		if l := caught.take(); strings.Contains(l, "panic") {
			t.Fatalf("%q made a handler panic:\n%s", req, l)
		}
	})
}
