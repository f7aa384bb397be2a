package netview

import (
	"encoding/binary"
	"errors"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"golang.org/x/sys/unix"
)

// How requests are taken and answered, after net/netlink/af_netlink.c
// (netlink_rcv_skb, netlink_ack, netlink_dump).

const (
	sizeofNlmsghdr = unix.SizeofNlMsghdr
	// goodSize bounds the datagrams of a dump: the kernel's NLMSG_GOODSIZE
	// with 4 KiB pages, which every program that reads netlink must take.
	goodSize = 4096 - 320
)

// Socket is what Handle needs to know of the program's socket.
type Socket struct {
	Protocol int    // NETLINK_ROUTE or NETLINK_SOCK_DIAG
	Port     uint32 // its port id (nl_pid), for nlmsg_pid of the answers
	ExtAck   bool   // NETLINK_EXT_ACK: errors may carry a message
	CapAck   bool   // NETLINK_CAP_ACK: errors carry the request's header only
}

// nlHeader is struct nlmsghdr.
type nlHeader struct {
	length uint32
	typ    uint16
	flags  uint16
	seq    uint32
	pid    uint32
}

func parseHeader(b []byte) nlHeader {
	return nlHeader{length: nlenc.Uint32(b[0:4]), typ: nlenc.Uint16(b[4:6]), flags: nlenc.Uint16(b[6:8]),
		seq: nlenc.Uint32(b[8:12]), pid: nlenc.Uint32(b[12:16])}
}

func align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// message encodes one netlink message: header, then the payloads in
// order, each padded to 4 bytes.
func message(typ, flags uint16, seq, pid uint32, payloads ...[]byte) []byte {
	n := sizeofNlmsghdr
	for _, p := range payloads {
		n += align(len(p))
	}
	b := make([]byte, sizeofNlmsghdr, n)
	nlenc.PutUint32(b[0:4], uint32(n))
	nlenc.PutUint16(b[4:6], typ)
	nlenc.PutUint16(b[6:8], flags)
	nlenc.PutUint32(b[8:12], seq)
	nlenc.PutUint32(b[12:16], pid)
	for _, p := range payloads {
		b = append(b, p...)
		b = append(b, make([]byte, align(len(p))-len(p))...)
	}
	return b
}

// raw is a fixed-size kernel struct in the machine's byte order.
func raw(v any) []byte {
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil {
		panic(err) // only fixed-size structs are passed
	}
	return b
}

// attrs encodes attributes; fill adds them.
func attrs(fill func(ae *netlink.AttributeEncoder)) []byte {
	ae := netlink.NewAttributeEncoder()
	fill(ae)
	b, err := ae.Encode()
	if err != nil {
		panic(err) // our own attributes are well formed
	}
	return b
}

// answer collects the datagrams of the answer to one datagram of
// requests.
type answer struct {
	dgrams [][]byte
	cur    []byte
}

// add appends msg to the datagram being filled, starting a new one when
// it would grow past goodSize.
func (a *answer) add(msg []byte) {
	if len(a.cur) > 0 && len(a.cur)+len(msg) > goodSize {
		a.flush()
	}
	a.cur = append(a.cur, msg...)
}

// alone sends msg in a datagram of its own, as the kernel sends every
// answer that is not part of a dump.
func (a *answer) alone(msg []byte) {
	a.flush()
	a.dgrams = append(a.dgrams, msg)
}

func (a *answer) flush() {
	if len(a.cur) > 0 {
		a.dgrams = append(a.dgrams, a.cur)
		a.cur = nil
	}
}

// dump sends the messages of a dump, each flagged NLM_F_MULTI, then
// NLMSG_DONE.
type dump struct {
	a   *answer
	req nlHeader
	pid uint32
}

func (d *dump) add(typ uint16, payloads ...[]byte) {
	d.a.add(message(typ, unix.NLM_F_MULTI, d.req.seq, d.pid, payloads...))
}

func (d *dump) done() {
	d.a.add(message(unix.NLMSG_DONE, unix.NLM_F_MULTI, d.req.seq, d.pid, raw(int32(0))))
	d.a.flush()
}

// refusal is an error with the errno to answer and, for programs that
// asked for extended acks, a message saying why.
type refusal struct {
	errno unix.Errno
	msg   string
}

func (r *refusal) Error() string { return r.msg }

func refuse(errno unix.Errno, msg string) error { return &refusal{errno: errno, msg: msg} }

// errnoOf is the errno an error answers with: a refusal's, an errno
// wrapped in it (the stack's methods wrap theirs), else EINVAL.
func errnoOf(err error) (unix.Errno, string) {
	var r *refusal
	if errors.As(err, &r) {
		return r.errno, r.msg
	}
	var en unix.Errno
	if errors.As(err, &en) {
		return en, err.Error()
	}
	return unix.EINVAL, err.Error()
}

// ack answers a request with struct nlmsgerr: error 0 (an
// acknowledgement) or a negative errno, then the request's header and,
// for an error on a socket without NETLINK_CAP_ACK, the whole request;
// with NETLINK_EXT_ACK an error also carries its message.
func ack(s Socket, req []byte, err error) []byte {
	h := parseHeader(req)
	var errno unix.Errno
	var text string
	if err != nil {
		errno, text = errnoOf(err)
	}
	echoed := req[:sizeofNlmsghdr]
	var flags uint16
	if errno != 0 && !s.CapAck {
		echoed = req
	} else {
		flags |= unix.NLM_F_CAPPED
	}
	payload := [][]byte{raw(-int32(errno)), echoed}
	if errno != 0 && s.ExtAck && text != "" {
		flags |= unix.NLM_F_ACK_TLVS
		payload = append(payload, attrs(func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NLMSGERR_ATTR_MSG, text)
		}))
	}
	// The echoed request is copied whole: its own length says how long
	// it is, and nlmsgerr's header length counts it padded.
	return message(unix.NLMSG_ERROR, flags, h.seq, s.Port, payload...)
}

// Handle answers one datagram the program sent on socket s and returns
// the datagrams to queue for it, in order. Like the kernel, it stops at a
// message whose length is wrong, ignores messages that are not requests,
// and acknowledges a request that asks for it (NLM_F_ACK) or fails.
func (v *View) Handle(s Socket, dgram []byte) [][]byte {
	var a answer
	for len(dgram) >= sizeofNlmsghdr {
		h := parseHeader(dgram)
		if h.length < sizeofNlmsghdr || int(h.length) > len(dgram) {
			break
		}
		req := dgram[:h.length]
		dgram = dgram[min(align(int(h.length)), len(dgram)):]
		if h.flags&unix.NLM_F_REQUEST == 0 {
			continue
		}
		var err error
		dumped := false
		if h.typ >= unix.NLMSG_MIN_TYPE {
			dumped, err = v.request(s, h, req, &a)
		}
		if err != nil || (h.flags&unix.NLM_F_ACK != 0 && !dumped) {
			a.alone(ack(s, req, err))
		}
	}
	a.flush()
	return a.dgrams
}

// request answers one request; dumped says it was answered with a dump,
// which is not acknowledged.
func (v *View) request(s Socket, h nlHeader, req []byte, a *answer) (dumped bool, err error) {
	body := req[sizeofNlmsghdr:]
	isDump := h.flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	d := &dump{a: a, req: h, pid: s.Port}
	switch s.Protocol {
	case unix.NETLINK_ROUTE:
		return v.route(h, body, isDump, d)
	case unix.NETLINK_SOCK_DIAG:
		return v.sockDiag(h, body, isDump, d)
	}
	return false, refuse(unix.EOPNOTSUPP, "netlink protocol not served by the user-level stack")
}
