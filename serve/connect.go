package serve

import (
	"io"
	"net"
	"net/http"
	"sync"
)

// connect is CONNECT HOST:PORT: it dials r.Host through the stack and
// splices the raw streams.
func (s *Stack) connect(w http.ResponseWriter, r *http.Request) {
	target, err := s.st.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		target.Close()
		http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		target.Close()
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		target.Close()
		return
	}
	if !s.track(client, target) {
		return
	}
	go s.splice(client, brw.Reader, target)
}

// track registers a tunnel; false (and both closed) if the stack is
// already closing.
func (s *Stack) track(conns ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *Stack) closeTunnels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways; each direction's end is passed on as a
// half-close, so request-then-response protocols work.
func (s *Stack) splice(client net.Conn, clientBuf io.Reader, target net.Conn) {
	var wg sync.WaitGroup
	pipe := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go pipe(target, clientBuf)
	go pipe(client, target)
	wg.Wait()
	client.Close()
	target.Close()
	s.mu.Lock()
	if s.conns != nil {
		delete(s.conns, client)
		delete(s.conns, target)
	}
	s.mu.Unlock()
}
