package nat

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// TestDialHost: dialHost connects as net.Dialer does (TCP_NODELAY and
// keep-alive, the peer's address), fails refused connects with
// ECONNREFUSED, and gives up a connect still in progress when its context
// ends.
func TestDialHost(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	closedAddr := netip.MustParseAddrPort(closed.Addr().String())
	closed.Close()

	tests := []struct {
		name   string
		target netip.AddrPort
		want   error
	}{
		{"listening IPv4", netip.MustParseAddrPort(open.Addr().String()), nil},
		{"closed IPv6 port", closedAddr, syscall.ECONNREFUSED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialHost(context.Background(), tt.target)
			if !errors.Is(err, tt.want) || (tt.want != nil) != (err != nil) {
				t.Fatalf("dialHost(%s): %v, want %v", tt.target, err, tt.want)
			}
			if err != nil {
				return
			}
			defer c.Close()
			rc, _ := c.SyscallConn()
			var peer syscall.Sockaddr
			opts := map[string]int{}
			rc.Control(func(fd uintptr) {
				peer, _ = syscall.Getpeername(int(fd))
				for name, o := range map[string][2]int{
					"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
					"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
					"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
					"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
					"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
				} {
					opts[name], _ = syscall.GetsockoptInt(int(fd), o[0], o[1])
				}
			})
			if p, ok := peer.(*syscall.SockaddrInet4); !ok || netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(p.Port)) != tt.target {
				t.Errorf("peer %+v, want %s", peer, tt.target)
			}
			// What net.Dialer sets (Go's keep-alive defaults).
			want := map[string]int{"TCP_NODELAY": 1, "SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 15, "TCP_KEEPINTVL": 15, "TCP_KEEPCNT": 9}
			for name, v := range want {
				if opts[name] != v {
					t.Errorf("%s is %d, want %d as net.Dialer sets it", name, opts[name], v)
				}
			}
		})
	}

	t.Run("in progress until the context ends", func(t *testing.T) {
		// A listener that never accepts, with a backlog of one: once its
		// queue is full the kernel drops further SYNs, so the next connect
		// stays in progress.
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Listen(fd, 0); err != nil {
			t.Fatal(err)
		}
		sa, _ := syscall.Getsockname(fd)
		target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
		var held []io.Closer
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			c, err := dialHost(ctx, target)
			cancel()
			if err == nil {
				held = append(held, c) // the queue still had room
				if len(held) > 16 {
					t.Fatal("16 connects to a listener with a backlog of one completed")
				}
				continue
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("dialHost to a full queue: %v, want the context's deadline", err)
			}
			break
		}
		// And cancelling ends it the same way.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := dialHost(ctx, target); done <- err }()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("dialHost cancelled: %v, want context.Canceled", err)
		}
	})
}
