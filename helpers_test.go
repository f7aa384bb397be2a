package ustack_test

import (
	"crypto/sha256"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/ustack/ustack"
)

// Addresses NewPair gives its two stacks by default.
const (
	addrA4 = "10.0.9.1"
	addrB4 = "10.0.9.2"
	addrA6 = "fd09::1"
	addrB6 = "fd09::2"
)

// newPair builds a pair and closes both stacks when the test ends.
func newPair(t testing.TB, a, b ustack.Config) (*ustack.Stack, *ustack.Stack) {
	t.Helper()
	sa, sb, err := ustack.NewPair(a, b)
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	t.Cleanup(func() {
		sa.Close()
		sb.Close()
	})
	return sa, sb
}

// stream returns n bytes of a deterministic pseudo-random stream.
func stream(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// hashingWriter counts and hashes what passes through it.
type hashingWriter struct {
	h hash.Hash
	n int64
}

func newHashingWriter() *hashingWriter { return &hashingWriter{h: sha256.New()} }

func (w *hashingWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

func (w *hashingWriter) Sum() [32]byte { return [32]byte(w.h.Sum(nil)) }

type closeWriter interface{ CloseWrite() error }

// acceptOne accepts one connection in the background.
func acceptOne(t testing.TB, ln net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// connect returns a connected TCP pair: c dialled from a, s accepted on b.
func connect(t testing.TB, a, b *ustack.Stack, network, bAddr string) (c, s net.Conn) {
	t.Helper()
	ln, err := b.Listen(network, net.JoinHostPort(bAddr, "0"))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	ch := acceptOne(t, ln)
	c, err = a.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatalf("Dial %s: %v", ln.Addr(), err)
	}
	s, ok := <-ch
	if !ok {
		c.Close()
		t.FailNow()
	}
	t.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return c, s
}

// bulkSend writes 1 MiB from c to s per iteration of b's loop (s reads and
// discards), half-closes c, and fails b unless s received every byte. It
// returns the bytes sent and the time from the first write to the last
// byte's arrival.
func bulkSend(b *testing.B, c, s net.Conn) (int64, time.Duration) {
	received := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, s)
		received <- n
	}()
	buf := make([]byte, 1<<20)
	stream(1, int64(len(buf))).Read(buf)
	b.SetBytes(int64(len(buf)))
	var sent int64
	start := time.Now()
	for b.Loop() {
		n, err := c.Write(buf)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	c.(closeWriter).CloseWrite()
	if n := <-received; n != sent {
		b.Fatalf("received %d of %d bytes", n, sent)
	}
	return sent, time.Since(start)
}
