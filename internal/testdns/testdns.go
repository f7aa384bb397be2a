// Package testdns is a DNS server for tests: authoritative for a few
// names, on the host's loopback, over UDP and TCP on one port. It records
// every question, so a test can tell that a program's query really
// reached it.
package testdns

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Query is one question the test's DNS server was asked.
type Query struct {
	Name string // fully qualified, lower case
	Type dnsmessage.Type
	Net  string // "udp" or "tcp"
}

// Server is an authoritative server for a few names, on the host's
// loopback, over UDP and TCP on the same port (New), or over UDP on a
// socket of the test's choosing (Serve). It records every question,
// so a test can tell that a program's query really reached it.
type Server struct {
	Port int                     // on 127.0.0.1, UDP and TCP (New)
	zone map[string][]netip.Addr // name -> its addresses (A and AAAA)

	mu      sync.Mutex
	queries []Query
}

// New serves zone until the test ends.
func New(t testing.TB, zone map[string][]netip.Addr) *Server {
	t.Helper()
	// One port for both transports: take a free UDP port, then TCP on it.
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s := Serve(t, pc, zone)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serveTCP(c)
		}
	}()
	return s
}

// Serve answers for zone over UDP on pc, which may be a socket of a
// user-level stack, until the test ends; Port is pc's.
func Serve(t testing.TB, pc net.PacketConn, zone map[string][]netip.Addr) *Server {
	s := &Server{zone: map[string][]netip.Addr{}}
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		s.Port = a.Port
	}
	for name, addrs := range zone {
		s.zone[strings.ToLower(name)] = addrs
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer := s.answer(buf[:n], "udp"); answer != nil {
				pc.WriteTo(answer, from)
			}
		}
	}()
	return s
}

// serveTCP answers length-prefixed queries (RFC 1035 4.2.2) until EOF.
func (s *Server) serveTCP(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		answer := s.answer(q, "tcp")
		if answer == nil {
			return
		}
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(answer)))); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// answer records the question of msg and builds the reply: the zone's
// addresses of the asked type, NXDOMAIN for names outside the zone.
func (s *Server) answer(msg []byte, network string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	s.mu.Lock()
	s.queries = append(s.queries, Query{name, q.Type, network})
	s.mu.Unlock()

	addrs, known := s.zone[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// Asked reports whether the server was asked for name's records of type
// typ over network.
func (s *Server) Asked(name string, typ dnsmessage.Type, network string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.queries, Query{strings.ToLower(name), typ, network})
}

func (s *Server) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.queries)
}

// Addr is where the server listens.
func (s *Server) Addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(s.Port))
}

// Queries returns the questions asked so far.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}
