package netview_test

import (
	"encoding/binary"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FuzzHandle feeds the request parser whatever a program might send on a
// netlink socket, on both families the stack serves: it must answer every
// datagram without panicking, with well-formed messages only, each error
// a negative errno. Run it with
//
//	go test -run '^$' -fuzz FuzzHandle -fuzztime 60s ./netview
func FuzzHandle(f *testing.F) {
	diagReq := make([]byte, 56) // struct inet_diag_req_v2: TCP, every state, every extension
	diagReq[0], diagReq[1], diagReq[2] = unix.AF_INET, unix.IPPROTO_TCP, 0xff
	binary.NativeEndian.PutUint32(diagReq[4:], ^uint32(0))
	seeds := []struct {
		dgram []byte
		diag  bool
	}{
		{request(unix.RTM_GETLINK, unix.NLM_F_DUMP, raw(unix.IfInfomsg{})), false},
		{request(unix.RTM_GETADDR, unix.NLM_F_DUMP, raw(unix.IfAddrmsg{Family: unix.AF_INET})), false},
		{request(unix.RTM_GETROUTE, unix.NLM_F_DUMP, raw(unix.RtMsg{Family: unix.AF_INET6})), false},
		{request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP, raw(unix.NdMsg{})), false},
		{request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK,
			raw(unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: 24, Index: 2}),
			netlink.Attribute{Type: unix.IFA_LOCAL, Data: []byte{10, 0, 9, 99}}), false},
		{request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_ACK,
			raw(unix.RtMsg{Family: unix.AF_INET, Dst_len: 24, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}),
			netlink.Attribute{Type: unix.RTA_DST, Data: []byte{192, 0, 2, 0}},
			netlink.Attribute{Type: unix.RTA_GATEWAY, Data: []byte{10, 0, 9, 2}}), false},
		{request(unix.RTM_SETLINK, unix.NLM_F_ACK, raw(unix.IfInfomsg{Index: 2}),
			netlink.Attribute{Type: unix.IFLA_MTU, Data: binary.NativeEndian.AppendUint32(nil, 1400)}), false},
		{request(unix.RTM_GETROUTE, 0, raw(unix.RtMsg{Family: unix.AF_INET}),
			netlink.Attribute{Type: unix.RTA_DST, Data: []byte{10, 0, 9, 2}}), false},
		{request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_ACK, raw(unix.NdMsg{Family: unix.AF_INET6, Ifindex: 2}),
			netlink.Attribute{Type: unix.NDA_DST, Data: make([]byte, 16)},
			netlink.Attribute{Type: unix.NDA_LLADDR, Data: []byte{2, 0, 0, 0, 0, 7}}), false},
		{request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, diagReq), true},
		{request(unix.SOCK_DIAG_BY_FAMILY, 0, diagReq), true},
		{[]byte{16, 0, 0, 0, 18, 0, 1, 0}, false}, // a header cut short
	}
	for _, s := range seeds {
		f.Add(s.dgram, s.diag)
	}
	st, v := newStack(f)
	// Sockets for sock_diag to list: a listener and a connection to it.
	ln, err := st.Listen("tcp4", "127.0.0.1:8080")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	c, err := st.Dial("tcp4", "127.0.0.1:8080")
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	f.Fuzz(func(t *testing.T, dgram []byte, diag bool) {
		s := sock
		if diag {
			s.Protocol = unix.NETLINK_SOCK_DIAG
		}
		for _, d := range v.Handle(s, dgram) {
			msgs, err := syscall.ParseNetlinkMessage(d)
			if err != nil {
				t.Fatalf("an answer that does not parse: %v (% x)", err, d)
			}
			for _, m := range msgs {
				if m.Header.Type != unix.NLMSG_ERROR {
					continue
				}
				if len(m.Data) < 4+unix.SizeofNlMsghdr {
					t.Fatalf("an NLMSG_ERROR of %d bytes", len(m.Data))
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e > 0 || e < -4095 {
					t.Fatalf("an error that is not a negative errno: %d", e)
				}
			}
		}
	})
}
