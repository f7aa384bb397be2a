package netview_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/netview"
)

// newStack returns a stack of a pair (eth0 10.0.9.1/24 and fd09::1/64,
// gateway 10.0.9.2) and its view.
func newStack(t testing.TB) (*ustack.Stack, *netview.View) {
	t.Helper()
	a, b, err := ustack.NewPair(ustack.Config{Gateways: []netip.Addr{netip.MustParseAddr("10.0.9.2")}}, ustack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, netview.New(a, nil, nil)
}

var sock = netview.Socket{Protocol: unix.NETLINK_ROUTE, Port: 4242, ExtAck: true}

const seq = 7

// request is one netlink request with the given header payloads and
// attributes.
func request(typ, flags uint16, body []byte, attrs ...netlink.Attribute) []byte {
	b := append([]byte(nil), body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if len(attrs) > 0 {
		ab, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			panic(err)
		}
		b = append(b, ab...)
	}
	h := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(h, uint32(len(h)+len(b)))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags|unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(h[8:], seq)
	return append(h, b...)
}

func raw(v any) []byte {
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil {
		panic(err)
	}
	return b
}

// roundTrip sends req and parses every message of the answer.
func roundTrip(t *testing.T, v *netview.View, s netview.Socket, req []byte) []syscall.NetlinkMessage {
	t.Helper()
	var out []syscall.NetlinkMessage
	for _, d := range v.Handle(s, req) {
		if len(d) > 3776 {
			t.Errorf("a datagram of %d bytes, more than NLMSG_GOODSIZE", len(d))
		}
		msgs, err := syscall.ParseNetlinkMessage(d)
		if err != nil {
			t.Fatalf("parsing the answer: %v", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Pid != s.Port {
				t.Errorf("answer with seq %d pid %d, want %d and %d", m.Header.Seq, m.Header.Pid, seq, s.Port)
			}
		}
		out = append(out, msgs...)
	}
	return out
}

// ackErrno is the error of the acknowledgement that answers a change (0:
// it was made), and its extended-ack message.
func ackErrno(t *testing.T, msgs []syscall.NetlinkMessage) (unix.Errno, string) {
	t.Helper()
	if len(msgs) != 1 || msgs[0].Header.Type != unix.NLMSG_ERROR {
		t.Fatalf("want one NLMSG_ERROR, got %d messages", len(msgs))
	}
	d := msgs[0].Data
	errno := unix.Errno(-int32(binary.NativeEndian.Uint32(d)))
	var text string
	if msgs[0].Header.Flags&unix.NLM_F_ACK_TLVS != 0 {
		echoed := binary.NativeEndian.Uint32(d[4:])
		if msgs[0].Header.Flags&unix.NLM_F_CAPPED != 0 {
			echoed = unix.SizeofNlMsghdr
		}
		attrs, err := netlink.UnmarshalAttributes(d[4+(echoed+3)&^3:])
		if err != nil {
			t.Fatalf("extended ack: %v", err)
		}
		for _, a := range attrs {
			if a.Type == unix.NLMSGERR_ATTR_MSG {
				text = string(a.Data[:len(a.Data)-1])
			}
		}
	}
	return errno, text
}

func attrsOf(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16][]byte{}
	for _, a := range attrs {
		out[a.Type] = a.Data
	}
	return out
}

// links dumps the links: index -> name, and the whole messages.
func links(t *testing.T, v *netview.View) map[int32]string {
	t.Helper()
	msgs := roundTrip(t, v, sock, request(unix.RTM_GETLINK, unix.NLM_F_DUMP, raw(unix.IfInfomsg{})))
	out := map[int32]string{}
	for i, m := range msgs {
		if i == len(msgs)-1 {
			if m.Header.Type != unix.NLMSG_DONE {
				t.Fatalf("the dump ends with type %d, not NLMSG_DONE", m.Header.Type)
			}
			break
		}
		if m.Header.Type != unix.RTM_NEWLINK || m.Header.Flags&unix.NLM_F_MULTI == 0 {
			t.Fatalf("dump message of type %d flags %#x", m.Header.Type, m.Header.Flags)
		}
		var ifi unix.IfInfomsg
		binary.Decode(m.Data, binary.NativeEndian, &ifi)
		at := attrsOf(t, m.Data[unix.SizeofIfInfomsg:])
		out[ifi.Index] = string(at[unix.IFLA_IFNAME][:len(at[unix.IFLA_IFNAME])-1])
	}
	return out
}

func TestLinks(t *testing.T) {
	st, v := newStack(t)
	got := links(t, v)
	if got[1] != "lo" || got[2] != "eth0" || len(got) != 2 {
		t.Fatalf("links %v, want lo as 1 and eth0 as 2", got)
	}
	msgs := roundTrip(t, v, sock, request(unix.RTM_GETLINK, 0, raw(unix.IfInfomsg{}),
		netlink.Attribute{Type: unix.IFLA_IFNAME, Data: []byte("eth0\x00")}))
	if len(msgs) != 1 || msgs[0].Header.Type != unix.RTM_NEWLINK || msgs[0].Header.Flags&unix.NLM_F_MULTI != 0 {
		t.Fatalf("RTM_GETLINK by name: %+v", msgs)
	}
	var ifi unix.IfInfomsg
	binary.Decode(msgs[0].Data, binary.NativeEndian, &ifi)
	want := uint32(unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST | unix.IFF_RUNNING | unix.IFF_LOWER_UP)
	if ifi.Index != 2 || ifi.Flags != want || ifi.Type != unix.ARPHRD_ETHER {
		t.Errorf("eth0: index %d flags %#x type %d, want 2, %#x, ARPHRD_ETHER", ifi.Index, ifi.Flags, ifi.Type, want)
	}
	at := attrsOf(t, msgs[0].Data[unix.SizeofIfInfomsg:])
	if mtu := binary.NativeEndian.Uint32(at[unix.IFLA_MTU]); int(mtu) != st.MTU() {
		t.Errorf("IFLA_MTU %d, the stack's is %d", mtu, st.MTU())
	}
	if len(at[unix.IFLA_ADDRESS]) != 6 || len(at[unix.IFLA_STATS64]) < 8*8 {
		t.Errorf("IFLA_ADDRESS %x, IFLA_STATS64 of %d bytes", at[unix.IFLA_ADDRESS], len(at[unix.IFLA_STATS64]))
	}
	for _, tc := range []struct {
		name string
		body []byte
		attr []netlink.Attribute
		want unix.Errno
	}{
		{"unknown index", raw(unix.IfInfomsg{Index: 9}), nil, unix.ENODEV},
		{"unknown name", raw(unix.IfInfomsg{}), []netlink.Attribute{{Type: unix.IFLA_IFNAME, Data: []byte("eth9\x00")}}, unix.ENODEV},
		{"neither", raw(unix.IfInfomsg{}), nil, unix.EINVAL},
		{"short header", []byte{0}, nil, unix.EINVAL},
	} {
		if en, _ := ackErrno(t, roundTrip(t, v, sock, request(unix.RTM_GETLINK, 0, tc.body, tc.attr...))); en != tc.want {
			t.Errorf("RTM_GETLINK, %s: %v, want %v", tc.name, en, tc.want)
		}
	}
}

// addrs dumps the addresses: "ifindex prefix" for each.
func addrs(t *testing.T, v *netview.View, family uint8) []string {
	t.Helper()
	var out []string
	for _, m := range roundTrip(t, v, sock, request(unix.RTM_GETADDR, unix.NLM_F_DUMP, raw(unix.IfAddrmsg{Family: family}))) {
		if m.Header.Type != unix.RTM_NEWADDR {
			continue
		}
		var ifa unix.IfAddrmsg
		binary.Decode(m.Data, binary.NativeEndian, &ifa)
		at := attrsOf(t, m.Data[unix.SizeofIfAddrmsg:])
		ip, _ := netip.AddrFromSlice(at[unix.IFA_ADDRESS])
		out = append(out, netip.PrefixFrom(ip, int(ifa.Prefixlen)).String()+"@"+string(rune('0'+ifa.Index)))
	}
	return out
}

func TestAddresses(t *testing.T) {
	st, v := newStack(t)
	want := []string{"127.0.0.1/8@1", "10.0.9.1/24@2", "::1/128@1", "fd09::1/64@2"}
	if got := addrs(t, v, unix.AF_UNSPEC); !equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	if got := addrs(t, v, unix.AF_INET6); !equal(got, want[2:]) {
		t.Errorf("IPv6 addresses %v, want %v", got, want[2:])
	}
	add := func(flags uint16, index uint32, ip string, bits uint8) (unix.Errno, string) {
		a := netip.MustParseAddr(ip)
		fam := uint8(unix.AF_INET)
		if a.Is6() {
			fam = unix.AF_INET6
		}
		return ackErrno(t, roundTrip(t, v, sock, request(unix.RTM_NEWADDR, flags|unix.NLM_F_ACK,
			raw(unix.IfAddrmsg{Family: fam, Prefixlen: bits, Index: index}),
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: a.AsSlice()},
			netlink.Attribute{Type: unix.IFA_ADDRESS, Data: a.AsSlice()})))
	}
	del := func(index uint32, ip string, bits uint8) (unix.Errno, string) {
		a := netip.MustParseAddr(ip)
		return ackErrno(t, roundTrip(t, v, sock, request(unix.RTM_DELADDR, unix.NLM_F_ACK,
			raw(unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: bits, Index: index}),
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: a.AsSlice()},
			netlink.Attribute{Type: unix.IFA_ADDRESS, Data: a.AsSlice()})))
	}
	const createExcl = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	if en, msg := add(createExcl, 2, "10.0.9.99", 24); en != 0 {
		t.Fatalf("ip addr add 10.0.9.99/24 dev eth0: %v (%s)", en, msg)
	}
	if got := st.Addrs(); !containsPrefix(got, "10.0.9.99/24") {
		t.Errorf("the stack's Addrs after the add: %v", got)
	}
	for _, tc := range []struct {
		name  string
		flags uint16
		index uint32
		ip    string
		bits  uint8
		want  unix.Errno
	}{
		{"again", createExcl, 2, "10.0.9.99", 24, unix.EEXIST},
		{"replace by itself", unix.NLM_F_CREATE | unix.NLM_F_REPLACE, 2, "10.0.9.99", 24, 0},
		{"no such device", createExcl, 7, "10.0.8.1", 24, unix.ENODEV},
		{"prefix too long", createExcl, 2, "10.0.8.1", 33, unix.EINVAL},
		{"IPv6", createExcl, 2, "fd09::99", 64, 0},
	} {
		if en, _ := add(tc.flags, tc.index, tc.ip, tc.bits); en != tc.want {
			t.Errorf("RTM_NEWADDR %s: %v, want %v", tc.name, en, tc.want)
		}
	}
	if en, _ := del(2, "10.0.9.98", 24); en != unix.EADDRNOTAVAIL {
		t.Errorf("deleting an address eth0 does not have: %v, want EADDRNOTAVAIL", en)
	}
	if en, _ := del(2, "10.0.9.99", 16); en != unix.EADDRNOTAVAIL {
		t.Errorf("deleting with the wrong prefix length: %v, want EADDRNOTAVAIL", en)
	}
	if en, msg := del(2, "10.0.9.99", 24); en != 0 {
		t.Fatalf("ip addr del: %v (%s)", en, msg)
	}
	if got := st.Addrs(); containsPrefix(got, "10.0.9.99/24") {
		t.Errorf("the stack's Addrs after the delete: %v", got)
	}
	// The subnet route stays: 10.0.9.1 is still in it.
	if !hasRoute(routes(t, v, unix.AF_INET), "10.0.9.0/24 dev 2 proto 2") {
		t.Errorf("the subnet route went with the second address: %v", routes(t, v, unix.AF_INET))
	}
}

func containsPrefix(ps []netip.Prefix, s string) bool {
	for _, p := range ps {
		if p.String() == s {
			return true
		}
	}
	return false
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// routes dumps the main table: "DST [via GW] dev INDEX proto P".
func routes(t *testing.T, v *netview.View, family uint8) []string {
	t.Helper()
	var out []string
	for _, m := range roundTrip(t, v, sock, request(unix.RTM_GETROUTE, unix.NLM_F_DUMP, raw(unix.RtMsg{Family: family}))) {
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		var rt unix.RtMsg
		binary.Decode(m.Data, binary.NativeEndian, &rt)
		if rt.Table != unix.RT_TABLE_MAIN {
			continue
		}
		at := attrsOf(t, m.Data[unix.SizeofRtMsg:])
		dst := "default"
		if d, ok := at[unix.RTA_DST]; ok {
			ip, _ := netip.AddrFromSlice(d)
			dst = netip.PrefixFrom(ip, int(rt.Dst_len)).String()
		}
		if g, ok := at[unix.RTA_GATEWAY]; ok {
			ip, _ := netip.AddrFromSlice(g)
			dst += " via " + ip.String()
		}
		dst += " dev " + string(rune('0'+binary.NativeEndian.Uint32(at[unix.RTA_OIF])))
		dst += " proto " + string(rune('0'+rt.Protocol))
		out = append(out, dst)
	}
	return out
}

func hasRoute(rs []string, r string) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func TestRoutes(t *testing.T) {
	_, v := newStack(t)
	want := []string{"default via 10.0.9.2 dev 2 proto 3", "10.0.9.0/24 dev 2 proto 2"}
	if got := routes(t, v, unix.AF_INET); !equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	change := func(typ, flags uint16, dst string, via string, oif uint32) unix.Errno {
		p := netip.MustParsePrefix(dst)
		m := unix.RtMsg{Family: unix.AF_INET, Dst_len: uint8(p.Bits()), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
			Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST}
		attrs := []netlink.Attribute{{Type: unix.RTA_DST, Data: p.Addr().AsSlice()}}
		if via != "" {
			attrs = append(attrs, netlink.Attribute{Type: unix.RTA_GATEWAY, Data: netip.MustParseAddr(via).AsSlice()})
		}
		if oif != 0 {
			attrs = append(attrs, netlink.Attribute{Type: unix.RTA_OIF, Data: binary.NativeEndian.AppendUint32(nil, oif)})
		}
		en, _ := ackErrno(t, roundTrip(t, v, sock, request(typ, flags|unix.NLM_F_ACK, raw(m), attrs...)))
		return en
	}
	const add = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	for _, tc := range []struct {
		name       string
		typ, flags uint16
		dst, via   string
		oif        uint32
		want       unix.Errno
	}{
		{"add through the gateway", unix.RTM_NEWROUTE, add, "192.0.2.0/24", "10.0.9.2", 0, 0},
		{"add again", unix.RTM_NEWROUTE, add, "192.0.2.0/24", "10.0.9.2", 0, unix.EEXIST},
		{"replace", unix.RTM_NEWROUTE, unix.NLM_F_CREATE | unix.NLM_F_REPLACE, "192.0.2.0/24", "10.0.9.3", 2, 0},
		{"gateway off every subnet", unix.RTM_NEWROUTE, add, "198.51.100.0/24", "203.0.113.1", 0, unix.ENETUNREACH},
		{"host bits set", unix.RTM_NEWROUTE, add, "198.51.100.1/24", "10.0.9.2", 0, unix.EINVAL},
		{"no such device", unix.RTM_NEWROUTE, add, "198.51.100.0/24", "", 9, unix.ENODEV},
		{"change of a route that is not there", unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, "198.51.100.0/24", "10.0.9.2", 0, unix.ENOENT},
		{"delete one that is not there", unix.RTM_DELROUTE, 0, "198.51.100.0/24", "", 0, unix.ESRCH},
		{"delete", unix.RTM_DELROUTE, 0, "192.0.2.0/24", "", 0, 0},
		{"on-link", unix.RTM_NEWROUTE, add, "198.51.100.0/24", "", 2, 0},
	} {
		if en := change(tc.typ, tc.flags, tc.dst, tc.via, tc.oif); en != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, en, tc.want)
		}
	}
	want = append(want, "198.51.100.0/24 dev 2 proto 3")
	if got := routes(t, v, unix.AF_INET); !equal(got, want) {
		t.Errorf("routes after the changes %v, want %v", got, want)
	}
}

func TestSetLink(t *testing.T) {
	st, v := newStack(t)
	set := func(ifi unix.IfInfomsg, attrs ...netlink.Attribute) (unix.Errno, string) {
		return ackErrno(t, roundTrip(t, v, sock, request(unix.RTM_NEWLINK, unix.NLM_F_ACK, raw(ifi), attrs...)))
	}
	mtu := func(n uint32) netlink.Attribute {
		return netlink.Attribute{Type: unix.IFLA_MTU, Data: binary.NativeEndian.AppendUint32(nil, n)}
	}
	if en, msg := set(unix.IfInfomsg{Index: 2}, mtu(1400)); en != 0 || st.MTU() != 1400 {
		t.Fatalf("ip link set eth0 mtu 1400: %v (%s); the stack's MTU is %d", en, msg, st.MTU())
	}
	if en, _ := set(unix.IfInfomsg{Index: 2}, mtu(70000)); en != unix.EINVAL || st.MTU() != 1400 {
		t.Errorf("an MTU past the link's: %v, MTU now %d; want EINVAL and 1400", en, st.MTU())
	}
	if en, _ := set(unix.IfInfomsg{Index: 2, Change: unix.IFF_UP}); en != 0 {
		t.Fatalf("ip link set eth0 down: %v", en)
	}
	msgs := roundTrip(t, v, sock, request(unix.RTM_GETLINK, 0, raw(unix.IfInfomsg{Index: 2})))
	var ifi unix.IfInfomsg
	binary.Decode(msgs[0].Data, binary.NativeEndian, &ifi)
	if ifi.Flags&unix.IFF_UP != 0 {
		t.Errorf("eth0 still up after ip link set down: flags %#x", ifi.Flags)
	}
	if en, _ := set(unix.IfInfomsg{Index: 2, Flags: unix.IFF_UP, Change: unix.IFF_UP}); en != 0 {
		t.Errorf("ip link set eth0 up: %v", en)
	}
	for _, tc := range []struct {
		name  string
		ifi   unix.IfInfomsg
		attrs []netlink.Attribute
		want  unix.Errno
	}{
		{"promisc", unix.IfInfomsg{Index: 2, Flags: unix.IFF_PROMISC, Change: unix.IFF_PROMISC}, nil, unix.EOPNOTSUPP},
		{"rename", unix.IfInfomsg{Index: 2}, []netlink.Attribute{{Type: unix.IFLA_IFNAME, Data: []byte("wan0\x00")}}, unix.EOPNOTSUPP},
		{"no such device", unix.IfInfomsg{Index: 5}, nil, unix.ENODEV},
	} {
		en, msg := set(tc.ifi, tc.attrs...)
		if en != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, en, tc.want)
		}
		if en == unix.EOPNOTSUPP && msg == "" {
			t.Errorf("%s: refused without an extended-ack message", tc.name)
		}
	}
}

func TestMessageHandling(t *testing.T) {
	_, v := newStack(t)
	// Two requests in one datagram: both answered, in order.
	two := append(request(unix.RTM_GETLINK, unix.NLM_F_DUMP, raw(unix.IfInfomsg{})),
		request(unix.RTM_GETADDR, unix.NLM_F_DUMP, raw(unix.IfAddrmsg{}))...)
	msgs := roundTrip(t, v, sock, two)
	var done int
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_DONE {
			done++
		}
	}
	if done != 2 || msgs[0].Header.Type != unix.RTM_NEWLINK || msgs[len(msgs)-2].Header.Type != unix.RTM_NEWADDR {
		t.Errorf("two dumps in one datagram: %d NLMSG_DONE, first type %d", done, msgs[0].Header.Type)
	}
	// A message that is not a request, and one whose length runs past
	// the datagram, get no answer.
	notReq := request(unix.RTM_GETLINK, unix.NLM_F_DUMP, raw(unix.IfInfomsg{}))
	binary.NativeEndian.PutUint16(notReq[6:], unix.NLM_F_DUMP)
	if got := v.Handle(sock, notReq); len(got) != 0 {
		t.Errorf("a message without NLM_F_REQUEST was answered")
	}
	long := request(unix.RTM_GETLINK, unix.NLM_F_DUMP, raw(unix.IfInfomsg{}))
	binary.NativeEndian.PutUint32(long, 400)
	if got := v.Handle(sock, long); len(got) != 0 {
		t.Errorf("a message longer than its datagram was answered")
	}
	// An unknown request is refused; without NETLINK_CAP_ACK the error
	// echoes the request whole.
	plain := sock
	plain.ExtAck = false
	req := request(unix.RTM_NEWRULE, 0, make([]byte, 12))
	msgs = roundTrip(t, v, plain, req)
	if en, _ := ackErrno(t, msgs); en != unix.EOPNOTSUPP || len(msgs[0].Data) != 4+len(req) {
		t.Errorf("RTM_NEWRULE: %v with %d bytes, want EOPNOTSUPP echoing %d", en, len(msgs[0].Data), 4+len(req))
	}
	// A dump of something the stack has none of is empty.
	msgs = roundTrip(t, v, sock, request(unix.RTM_GETRULE, unix.NLM_F_DUMP, make([]byte, 12)))
	if len(msgs) != 1 || msgs[0].Header.Type != unix.NLMSG_DONE {
		t.Errorf("RTM_GETRULE dump: %d messages, want NLMSG_DONE alone", len(msgs))
	}
}

// TestManyAddresses: a dump larger than a datagram is split, each message
// whole, and ends with one NLMSG_DONE.
func TestManyAddresses(t *testing.T) {
	st, v := newStack(t)
	for i := 1; i <= 120; i++ {
		if err := st.AddAddress("eth0", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 24)); err != nil {
			t.Fatal(err)
		}
	}
	if got := addrs(t, v, unix.AF_INET); len(got) != 122 {
		t.Errorf("dumped %d IPv4 addresses, want 122", len(got))
	}
	if n := len(v.Handle(sock, request(unix.RTM_GETADDR, unix.NLM_F_DUMP, raw(unix.IfAddrmsg{})))); n < 2 {
		t.Errorf("the dump of 124 addresses came in %d datagrams", n)
	}
}

func TestIfreq(t *testing.T) {
	st, v := newStack(t)
	ifreq := func(name string, data []byte) []byte {
		b := make([]byte, netview.SizeofIfreq)
		copy(b, name)
		copy(b[16:], data)
		return b
	}
	u32 := func(b []byte) uint32 { return binary.NativeEndian.Uint32(b[16:]) }
	in4 := func(b []byte) string {
		if binary.NativeEndian.Uint16(b[16:]) != unix.AF_INET {
			return "not AF_INET"
		}
		return netip.AddrFrom4([4]byte(b[20:24])).String()
	}
	check := func(req uint32, in []byte, want unix.Errno) []byte {
		t.Helper()
		out, en := v.Ifreq(req, in)
		if en != want {
			t.Fatalf("ioctl %#x on %q: %v, want %v", req, in[:16], en, want)
		}
		return out
	}
	if got := u32(check(unix.SIOCGIFINDEX, ifreq("eth0", nil), 0)); got != 2 {
		t.Errorf("SIOCGIFINDEX eth0 = %d, want 2", got)
	}
	if out := check(unix.SIOCGIFNAME, ifreq("", []byte{1, 0, 0, 0}), 0); string(out[:3]) != "lo\x00" {
		t.Errorf("SIOCGIFNAME 1 = %q, want lo", out[:16])
	}
	if got := in4(check(unix.SIOCGIFADDR, ifreq("eth0", nil), 0)); got != "10.0.9.1" {
		t.Errorf("SIOCGIFADDR eth0 = %s", got)
	}
	if got := in4(check(unix.SIOCGIFNETMASK, ifreq("eth0", nil), 0)); got != "255.255.255.0" {
		t.Errorf("SIOCGIFNETMASK eth0 = %s", got)
	}
	if got := in4(check(unix.SIOCGIFBRDADDR, ifreq("eth0", nil), 0)); got != "10.0.9.255" {
		t.Errorf("SIOCGIFBRDADDR eth0 = %s", got)
	}
	if got := uint16(u32(check(unix.SIOCGIFFLAGS, ifreq("lo", nil), 0))); got != unix.IFF_UP|unix.IFF_LOOPBACK|unix.IFF_RUNNING {
		t.Errorf("SIOCGIFFLAGS lo = %#x", got)
	}
	if got := u32(check(unix.SIOCGIFMTU, ifreq("lo", nil), 0)); got != 65536 {
		t.Errorf("SIOCGIFMTU lo = %d", got)
	}
	hw := check(unix.SIOCGIFHWADDR, ifreq("eth0", nil), 0)
	if binary.NativeEndian.Uint16(hw[16:]) != unix.ARPHRD_ETHER || hw[18] == 0 && hw[19] == 0 {
		t.Errorf("SIOCGIFHWADDR eth0 = %x", hw[16:24])
	}
	check(unix.SIOCGIFADDR, ifreq("eth7", nil), unix.ENODEV)
	check(unix.SIOCGIFNAME, ifreq("", []byte{9}), unix.ENODEV)
	check(unix.SIOCSIFADDR, ifreq("eth0", nil), unix.EOPNOTSUPP)
	conf := v.IfConf()
	if len(conf) != 2*netview.SizeofIfreq || string(conf[:2]) != "lo" || string(conf[40:44]) != "eth0" {
		t.Errorf("SIOCGIFCONF entries %q", conf)
	}
	if err := st.RemoveAddress("lo", netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		t.Fatal(err)
	}
	check(unix.SIOCGIFADDR, ifreq("lo", nil), unix.EADDRNOTAVAIL)
	if conf := v.IfConf(); len(conf) != netview.SizeofIfreq {
		t.Errorf("SIOCGIFCONF has %d bytes once lo has no IPv4 address, want one entry", len(conf))
	}
}

// diagSockets dumps the sockets of family and protocol: "STATE LOCAL PEER".
func diagSockets(t *testing.T, v *netview.View, family, proto uint8) []string {
	t.Helper()
	s := netview.Socket{Protocol: unix.NETLINK_SOCK_DIAG, Port: 99}
	req := make([]byte, 56) // struct inet_diag_req_v2
	req[0], req[1] = family, proto
	binary.NativeEndian.PutUint32(req[4:], ^uint32(0)) // every state
	var out []string
	for _, m := range roundTrip(t, v, s, request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, req)) {
		if m.Header.Type != unix.SOCK_DIAG_BY_FAMILY {
			continue
		}
		d := m.Data // struct inet_diag_msg
		addr := func(off int) string {
			port := binary.BigEndian.Uint16(d[4+off/8:])
			b := d[8+off : 8+off+16]
			ip, _ := netip.AddrFromSlice(b[:4])
			if d[0] == unix.AF_INET6 {
				ip, _ = netip.AddrFromSlice(b)
			}
			return netip.AddrPortFrom(ip, port).String()
		}
		out = append(out, fmt.Sprint(d[1], " ", addr(0), " ", addr(16)))
	}
	return out
}

func TestSockDiag(t *testing.T) {
	st, v := newStack(t)
	ln, err := st.Listen("tcp4", "127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := st.Dial("tcp4", "127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	pc, err := st.ListenPacket("udp4", "10.0.9.1:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	client := c.LocalAddr().String()
	got := diagSockets(t, v, unix.AF_INET, unix.IPPROTO_TCP)
	sort.Strings(got)
	want := []string{"1 127.0.0.1:8080 " + client, "1 " + client + " 127.0.0.1:8080", "10 127.0.0.1:8080 0.0.0.0:0"}
	sort.Strings(want)
	if !equal(got, want) {
		t.Errorf("TCP sockets %q, want %q", got, want)
	}
	if got := diagSockets(t, v, unix.AF_INET, unix.IPPROTO_UDP); !equal(got, []string{"7 10.0.9.1:5353 0.0.0.0:0"}) {
		t.Errorf("UDP sockets %q", got)
	}
	if got := diagSockets(t, v, unix.AF_INET6, unix.IPPROTO_TCP); len(got) != 0 {
		t.Errorf("IPv6 TCP sockets %q, want none", got)
	}
	if got := diagSockets(t, v, unix.AF_UNIX, 0); len(got) != 0 {
		t.Errorf("AF_UNIX sockets %q, want none", got)
	}
}

// TestRefusals: malformed or impossible requests get the errno Linux
// gives them (the semantics package checks the same against the kernel).
func TestRefusals(t *testing.T) {
	_, v := newStack(t)
	diag := netview.Socket{Protocol: unix.NETLINK_SOCK_DIAG, Port: 4242}
	addr := raw(unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: 24, Index: 2})
	for _, tc := range []struct {
		name string
		s    netview.Socket
		req  []byte
		want unix.Errno
	}{
		{"an address of 3 bytes", sock, request(unix.RTM_NEWADDR, unix.NLM_F_CREATE, addr,
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: []byte{10, 0, 9}}), unix.ERANGE},
		{"an address of 5 bytes", sock, request(unix.RTM_NEWADDR, unix.NLM_F_CREATE, addr,
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: []byte{10, 0, 9, 9, 9}}), unix.EINVAL},
		{"a prefix of 33 bits", sock, request(unix.RTM_NEWADDR, unix.NLM_F_CREATE, raw(unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: 33, Index: 2}),
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: []byte{10, 0, 9, 9}}), unix.EINVAL},
		{"an address of no family", sock, request(unix.RTM_NEWADDR, unix.NLM_F_CREATE, raw(unix.IfAddrmsg{Family: 99, Index: 2})), unix.EOPNOTSUPP},
		{"a route of no family", sock, request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE, raw(unix.RtMsg{Family: 99, Type: unix.RTN_UNICAST})), unix.EOPNOTSUPP},
		{"a route in another table", sock, request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE, raw(unix.RtMsg{Family: unix.AF_INET, Table: 7, Type: unix.RTN_UNICAST})), unix.EOPNOTSUPP},
		{"a gateway of 2 bytes", sock, request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE, raw(unix.RtMsg{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}),
			netlink.Attribute{Type: unix.RTA_GATEWAY, Data: []byte{10, 0}}), unix.ERANGE},
		{"a neighbour address of 2 bytes", sock, request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE, raw(unix.NdMsg{Family: unix.AF_INET, Ifindex: 2}),
			netlink.Attribute{Type: unix.NDA_DST, Data: []byte{10, 0}}), unix.EINVAL},
		{"a header cut short", sock, request(unix.RTM_NEWADDR, unix.NLM_F_CREATE, []byte{2, 24}), unix.EINVAL},
		{"sock_diag of family 200", diag, request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, append([]byte{200, unix.IPPROTO_TCP}, make([]byte, 54)...)), unix.EINVAL},
		{"sock_diag cut short", diag, request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, []byte{unix.AF_INET, unix.IPPROTO_TCP}), unix.EINVAL},
	} {
		if en, _ := ackErrno(t, roundTrip(t, v, tc.s, tc.req)); en != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, en, tc.want)
		}
	}
}

// TestIPv6Routes: IPv6 routes carry their metric, ::1 is in the local
// table only, and every interface that is up but the loopback has
// ff00::/8, as on Linux.
func TestIPv6Routes(t *testing.T) {
	_, v := newStack(t)
	var got []string
	for _, m := range roundTrip(t, v, sock, request(unix.RTM_GETROUTE, unix.NLM_F_DUMP, raw(unix.RtMsg{Family: unix.AF_INET6}))) {
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		var rtm unix.RtMsg
		binary.Decode(m.Data, binary.NativeEndian, &rtm)
		at := attrsOf(t, m.Data[unix.SizeofRtMsg:])
		dst := "default"
		if b, ok := at[unix.RTA_DST]; ok {
			a, _ := netip.AddrFromSlice(b)
			dst = netip.PrefixFrom(a, int(rtm.Dst_len)).String()
		}
		metric, ok := at[unix.RTA_PRIORITY]
		if !ok {
			t.Errorf("the route to %s has no metric", dst)
			continue
		}
		got = append(got, fmt.Sprint(rtm.Table, " ", rtm.Type, " ", dst, " oif ", binary.NativeEndian.Uint32(at[unix.RTA_OIF]),
			" metric ", binary.NativeEndian.Uint32(metric)))
	}
	want := []string{
		"254 1 fd09::/64 oif 2 metric 256",
		"255 2 ::1/128 oif 1 metric 0",
		"255 2 fd09::1/128 oif 2 metric 0",
		"255 5 ff00::/8 oif 2 metric 256",
	}
	if !equal(got, want) {
		t.Errorf("IPv6 routes %q, want %q", got, want)
	}
}
