package sockets

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// FuzzCallArguments feeds arbitrary bytes, as a program may pass them, to
// every decoder that turns an intercepted call's memory into values:
// socket addresses (connect, bind, sends), struct msghdr and its iovecs,
// a send's control messages and socket option values. None may panic,
// and each must keep the kernel's limits: an accepted address has the
// family's length, a decoded msghdr's name length fits sockaddr_storage,
// an accepted control buffer's TTL is a TTL. The seeds are the cases of
// the semantics probe's scenarios.
//
//	go test -run '^$' -fuzz '^FuzzCallArguments$' -fuzztime 30s ./sockets
func FuzzCallArguments(f *testing.F) {
	le := binary.NativeEndian
	sockaddr4 := func(family uint16, port uint16, a [4]byte, size int) []byte {
		b := make([]byte, size)
		if size >= 2 {
			le.PutUint16(b, family)
		}
		if size >= 8 {
			binary.BigEndian.PutUint16(b[2:], port)
			copy(b[4:8], a[:])
		}
		return b
	}
	cmsgOf := func(level, typ int32, data []byte, length uint64) []byte {
		b := make([]byte, max(64, unix.CmsgSpace(len(data))))
		if length == 0 {
			length = uint64(unix.CmsgLen(len(data)))
		}
		le.PutUint64(b, length)
		le.PutUint32(b[8:], uint32(level))
		le.PutUint32(b[12:], uint32(typ))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	integer := func(v int32) []byte { return le.AppendUint32(nil, uint32(v)) }
	msghdrOf := func(name uint64, namelen uint32, iovlen uint64, controllen uint64) []byte {
		b := make([]byte, sizeofMsghdr)
		le.PutUint64(b, name)
		le.PutUint32(b[offMsgNamelen:], namelen)
		le.PutUint64(b[16:], 0x1000)
		le.PutUint64(b[24:], iovlen)
		le.PutUint64(b[offMsgControl:], 0x2000)
		le.PutUint64(b[offMsgControlen:], controllen)
		return b
	}
	// Addresses: bind with AF_UNSPEC, short, other families, IPv6.
	for _, a := range [][]byte{
		sockaddr4(unix.AF_UNSPEC, 0, [4]byte{}, 16),
		sockaddr4(unix.AF_UNSPEC, 80, [4]byte{127, 0, 0, 1}, 16),
		sockaddr4(unix.AF_UNSPEC, 0, [4]byte{}, 8),
		sockaddr4(unix.AF_INET, 9, [4]byte{127, 0, 0, 2}, 16),
		sockaddr4(unix.AF_INET, 9, [4]byte{127, 0, 0, 2}, 3),
		sockaddr4(unix.AF_INET6, 9, [4]byte{}, 28),
		sockaddr4(unix.AF_INET6, 9, [4]byte{}, 24),
		sockaddr4(unix.AF_UNIX, 0, [4]byte{}, 110),
		{},
	} {
		f.Add(a, []byte{}, []byte{})
	}
	// Control messages: the msg-control scenario's cases.
	for _, c := range [][]byte{
		make([]byte, 8),
		cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, integer(9), 8),
		cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, integer(9), 60)[:24],
		cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, integer(9), 0),
		cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, integer(0), 0),
		cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, []byte{9}, 0),
		cmsgOf(unix.IPPROTO_IP, unix.IP_TOS, []byte{0x10}, 0),
		cmsgOf(unix.IPPROTO_IP, 9999, integer(1), 0),
		cmsgOf(9999, 1, integer(1), 0),
		cmsgOf(unix.SOL_SOCKET, 9999, integer(1), 0),
		cmsgOf(unix.SOL_SOCKET, unix.SCM_RIGHTS, integer(0), 0),
		cmsgOf(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, integer(9), 0),
		cmsgOf(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, integer(-1), 0),
		cmsgOf(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, integer(300), 0),
		append(cmsgOf(unix.IPPROTO_IP, unix.IP_TTL, integer(7), 0)[:unix.CmsgSpace(4)], cmsgOf(unix.IPPROTO_IP, unix.IP_TOS, integer(4), 0)...),
	} {
		f.Add([]byte{}, c, []byte{})
	}
	// msghdrs: the msg-namelen scenario's lengths, a null name, too many
	// iovecs, a huge control length; then iovecs, one negative.
	for _, h := range [][]byte{
		msghdrOf(0x3000, 16, 1, 0),
		msghdrOf(0x3000, 1000, 1, 0),
		msghdrOf(0x3000, 0x7fffffff, 1, 0),
		msghdrOf(0x3000, 0xffffffff, 1, 0),
		msghdrOf(0, 0xffffffff, 1, 0),
		msghdrOf(0x3000, 16, maxIov+1, 0),
		msghdrOf(0x3000, 16, 1, 1<<31),
	} {
		iov := le.AppendUint64(le.AppendUint64(nil, 0x4000), 5)
		iov = le.AppendUint64(le.AppendUint64(iov, 0x5000), 1<<63)
		f.Add([]byte{}, []byte{}, append(h, iov...))
	}
	f.Fuzz(func(t *testing.T, addr, control, msg []byte) {
		for _, domain := range []int{unix.AF_INET, unix.AF_INET6} {
			for name, decode := range map[string]func([]byte, int) (tcpip.FullAddress, unix.Errno){
				"decodeSockaddr": decodeSockaddr, "decodeBindSockaddr": decodeBindSockaddr,
			} {
				a, en := decode(addr, domain)
				if en != 0 {
					continue
				}
				if min := map[int]int{unix.AF_INET: sizeofSockaddrIn, unix.AF_INET6: minSockaddrIn6}[domain]; len(addr) < min {
					t.Fatalf("%s accepted %d bytes for domain %d", name, len(addr), domain)
				}
				// What getsockname would report decodes to the same address.
				again, en := decodeSockaddr(encodeSockaddr(a, domain), domain)
				if en != 0 || again.Port != a.Port || (a.Addr.Len() == again.Addr.Len() && again.Addr != a.Addr) {
					t.Fatalf("%s: %v encodes to something that decodes to %v (%v)", name, a, again, en)
				}
			}
			cm, en := parseSendControl(control, domain)
			if en == 0 && cm.HasTTL && cm.TTL == 0 {
				t.Fatalf("control %x accepted with TTL 0", control)
			}
			if en != 0 && en != unix.EINVAL {
				t.Fatalf("control %x: %v, want 0 or EINVAL", control, en)
			}
		}
		if len(msg) >= sizeofMsghdr {
			h, _, iovLen, en := decodeMsghdr([sizeofMsghdr]byte(msg))
			if en == 0 {
				if h.namelen > sizeofSockaddrStor || (h.name == 0 && h.namelen != 0) || iovLen > maxIov {
					t.Fatalf("msghdr %x decoded to name length %d (name %#x), %d iovecs", msg[:sizeofMsghdr], h.namelen, h.name, iovLen)
				}
				if en := h.decodeIovecs(msg[sizeofMsghdr:]); en == 0 {
					if h.total > maxDatagram+1 || len(h.iov) != len(msg[sizeofMsghdr:])/sizeofIovec {
						t.Fatalf("iovecs %x: total %d, %d of them", msg[sizeofMsghdr:], h.total, len(h.iov))
					}
					for _, v := range h.iov {
						if v.length < 0 {
							t.Fatalf("iovec of negative length %d accepted", v.length)
						}
					}
				}
			}
		}
		if len(msg) >= 8 {
			l := decodeLinger([8]byte(msg))
			if l.Enabled != (le.Uint32(msg) != 0) {
				t.Fatalf("linger %x: enabled %v", msg[:8], l.Enabled)
			}
			_ = decodeInt([4]byte(msg))
		}
		if name := congestionName(control); len(name) > len(control) {
			t.Fatalf("congestion name %q longer than its %d bytes", name, len(control))
		}
	})
}
