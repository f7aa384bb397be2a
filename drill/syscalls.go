package drill

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// syscall runs a system call event.
func (r *run) syscall(e *Event, at int64) error {
	sc := e.Syscall
	if r.blocking != nil {
		if err := r.awaitIdle(); err != nil {
			return r.lineErr(e.Line, "runtime error in %s call: %v", sc.Name, err)
		}
	}
	if err := r.waitFor(e, at); err != nil {
		return err
	}
	req, err := r.request(sc)
	if err != nil {
		return r.lineErr(e.Line, "runtime error in %s call: %v", sc.Name, err)
	}
	r.logf("%s %s", secs(r.t.now()), sc)
	c, err := r.x.start(req)
	if err != nil {
		return err
	}
	if sc.Blocking {
		if err := r.await(c, true); err != nil {
			return err
		}
		end := sc.EndUsecs
		if e.Time == RelativeTime {
			end += at - e.Usecs
		}
		r.blocking, r.blockingEvent, r.blockingStart, r.blockingEnd = c, e, at, end
		return r.checkBlocking()
	}
	if err := r.await(c, false); err != nil {
		return err
	}
	if !c.done {
		return r.lineErr(e.Line, "runtime error in %s call: the call blocked and nothing due can end it (no packet, timer or call is pending); a call that blocks needs an end time, as in 0...0.1 %s(...)", sc.Name, sc.Name)
	}
	return r.checkResult(e, c)
}

// awaitIdle waits for the blocking call under way to return, as
// packetdrill does for up to a second before the next call.
func (r *run) awaitIdle() error {
	deadline := time.Now().Add(time.Second)
	for {
		if r.t.virtual() {
			if err := r.t.settle(); err != nil {
				return err
			}
		} else {
			r.x.wait(time.Millisecond)
		}
		if err := r.checkBlocking(); err != nil {
			return err
		}
		if r.blocking == nil {
			return nil
		}
		if r.t.virtual() || time.Now().After(deadline) {
			return fmt.Errorf("blocking system call while another blocking system call is already in progress")
		}
	}
}

// await waits for call c to return. With mayBlock it also stops when the
// call blocks. In virtual time a call that blocks without mayBlock lets
// time run on, timer by timer, until it returns, as packetdrill's main
// thread waits for it; it returns not done if no timer is left.
func (r *run) await(c *pending, mayBlock bool) error {
	if !r.t.virtual() {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if err := r.x.drain(); err != nil {
				return err
			}
			if c.done || mayBlock && r.t.blocked(c) {
				return nil
			}
			if time.Now().After(deadline) {
				return nil
			}
			r.x.wait(time.Millisecond)
		}
	}
	for {
		if err := r.t.settle(); err != nil {
			return err
		}
		if c.done || mayBlock {
			return nil
		}
		d, ok := r.t.nextDeadline()
		if !ok {
			return nil
		}
		r.t.advanceTo(d)
	}
}

// request turns a script's call into the executor's request, and records
// what the runner learns from it (sockets, connections).
func (r *run) request(sc *Syscall) (*request, error) {
	args := sc.Args
	need := func(n ...int) error {
		for _, k := range n {
			if len(args) == k {
				return nil
			}
		}
		return fmt.Errorf("Expected %d args but got %d", n[0], len(args))
	}
	ints := func(idx ...int) ([]int64, error) {
		var out []int64
		for _, i := range idx {
			v, err := r.evalInt(args[i])
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	fd := func() (int64, error) { return r.evalInt(args[0]) }
	req := &request{Op: sc.Name}
	switch sc.Name {
	case "socket":
		if err := need(3); err != nil {
			return nil, err
		}
		dom := r.cfg.socketDomain()
		if args[0].Kind != ExprEllipsis {
			v, err := r.evalInt(args[0])
			if err != nil {
				return nil, err
			}
			dom = v
		}
		rest, err := ints(1, 2)
		if err != nil {
			return nil, err
		}
		req.Ints = []int64{dom, rest[0], rest[1]}
	case "bind", "connect":
		if err := need(3); err != nil {
			return nil, err
		}
		f, err := fd()
		if err != nil {
			return nil, err
		}
		var sa []byte
		switch {
		case args[1].Kind == ExprEllipsis:
			if sc.Name == "bind" {
				sa = r.sockaddr(r.bindAddr(), int(f))
			} else {
				sa = r.sockaddr(netip.AddrPortFrom(r.cfg.RemoteIP, r.cfg.ConnectPort), int(f))
			}
		case args[1].Kind == ExprStruct && args[1].Tag == "sockaddr":
			sa, err = r.sockaddrExpr(args[1])
		default:
			// connect(fd, AF_UNSPEC, ...) dissolves an association.
			var fam int64
			fam, err = r.evalInt(args[1])
			sa = make([]byte, 16)
			binary.NativeEndian.PutUint16(sa, uint16(fam))
		}
		if err != nil {
			return nil, err
		}
		req.Ints, req.Addr = []int64{f}, sa
	case "listen":
		if err := need(2); err != nil {
			return nil, err
		}
		v, err := ints(0, 1)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "accept", "accept4", "getsockname", "getpeername":
		if err := need(3, 4); err != nil {
			return nil, err
		}
		f, err := fd()
		if err != nil {
			return nil, err
		}
		req.Ints = []int64{f, 0}
		if sc.Name == "accept4" {
			if len(args) != 4 {
				return nil, fmt.Errorf("Expected 4 args but got %d", len(args))
			}
			fl, err := r.evalInt(args[3])
			if err != nil {
				return nil, err
			}
			req.Ints[1] = fl
		}
	case "read", "write":
		if err := need(3); err != nil {
			return nil, err
		}
		v, err := ints(0, 2)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "recv", "send":
		if err := need(4); err != nil {
			return nil, err
		}
		v, err := ints(0, 2, 3)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "recvfrom", "sendto":
		if err := need(6); err != nil {
			return nil, err
		}
		v, err := ints(0, 2, 3)
		if err != nil {
			return nil, err
		}
		req.Ints = v
		if sc.Name == "sendto" {
			if args[4].Kind == ExprStruct {
				req.Addr, err = r.sockaddrExpr(args[4])
				if err != nil {
					return nil, err
				}
			} else {
				req.Addr = r.sockaddr(netip.AddrPortFrom(r.cfg.RemoteIP, r.cfg.ConnectPort), int(v[0]))
				r.noteDestination(int(v[0]))
			}
		}
	case "readv", "writev":
		if err := need(3); err != nil {
			return nil, err
		}
		f, err := fd()
		if err != nil {
			return nil, err
		}
		iov, err := r.iovecs(args[1])
		if err != nil {
			return nil, err
		}
		n, err := r.evalInt(args[2])
		if err != nil {
			return nil, err
		}
		if int(n) != len(iov) {
			return nil, fmt.Errorf("iov_count %d does not match %d-element iovec array", n, len(iov))
		}
		req.Ints, req.Iov = []int64{f}, iov
	case "recvmsg", "sendmsg":
		if err := need(3); err != nil {
			return nil, err
		}
		f, err := fd()
		if err != nil {
			return nil, err
		}
		m := args[1]
		if m.Kind != ExprStruct || m.Tag != "msghdr" {
			return nil, fmt.Errorf("Bad type; expected a msghdr {msg_name(...)=..., msg_iov(N)=[...], msg_flags=...}")
		}
		iov, err := r.iovecs(m.Fields["msg_iov"])
		if err != nil {
			return nil, err
		}
		if n := m.Fields["msg_iov()"]; n != nil {
			if v, err := r.evalInt(n); err != nil || int(v) != len(iov) {
				return nil, fmt.Errorf("msg_iov(%s) does not match %d-element iovec array", n, len(iov))
			}
		}
		if c := m.Fields["msg_control"]; c != nil && (c.Kind != ExprList || len(c.List) > 0) {
			return nil, fmt.Errorf("msg_control (control messages) is not supported")
		}
		fl, err := r.evalInt(args[2])
		if err != nil {
			return nil, err
		}
		req.Ints, req.Iov = []int64{f, fl}, iov
		if sc.Name == "sendmsg" {
			if flags, err := r.evalInt(m.Fields["msg_flags"]); err != nil || flags != 0 {
				return nil, fmt.Errorf("sendmsg ignores msg_flags field in msghdr")
			}
			if s := r.socks[int(f)]; s != nil && s.proto != TCP {
				req.Addr = r.sockaddr(netip.AddrPortFrom(r.cfg.RemoteIP, r.cfg.ConnectPort), int(f))
				r.noteDestination(int(f))
			}
		}
	case "fcntl":
		if err := need(2, 3); err != nil {
			return nil, err
		}
		idx := []int{0, 1}
		if len(args) == 3 {
			idx = append(idx, 2)
		}
		v, err := ints(idx...)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "ioctl":
		if err := need(2, 3); err != nil {
			return nil, err
		}
		v, err := ints(0, 1)
		if err != nil {
			return nil, err
		}
		if len(args) == 3 {
			if _, err := r.bracketInt(args[2]); err != nil {
				return nil, err
			}
			v = append(v, 0)
		}
		req.Ints = v
	case "close":
		if err := need(1); err != nil {
			return nil, err
		}
		v, err := ints(0)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "shutdown":
		if err := need(2); err != nil {
			return nil, err
		}
		v, err := ints(0, 1)
		if err != nil {
			return nil, err
		}
		req.Ints = v
	case "setsockopt":
		if err := need(5); err != nil {
			return nil, err
		}
		v, err := ints(0, 1, 2)
		if err != nil {
			return nil, err
		}
		val, err := r.optval(args[3])
		if err != nil {
			return nil, err
		}
		n := int64(len(val))
		if args[4].Kind != ExprEllipsis {
			if n, err = r.evalInt(args[4]); err != nil {
				return nil, err
			}
		}
		req.Ints, req.Data = append(v, n), val
	case "getsockopt":
		if err := need(5); err != nil {
			return nil, err
		}
		v, err := ints(0, 1, 2)
		if err != nil {
			return nil, err
		}
		n := 4
		switch {
		case args[4].Kind != ExprEllipsis:
			l, err := r.bracketInt(args[4])
			if err != nil {
				return nil, err
			}
			n = int(l)
		case args[3].Kind == ExprStruct && args[3].Tag == "list":
			n = unix.SizeofTCPInfo
		case args[3].Kind == ExprString:
			n = len(args[3].Str)
		case args[3].Kind == ExprStruct && args[3].Tag == "linger":
			n = 8
		}
		req.Ints, req.OutLen = v, n
	case "poll":
		if err := need(3); err != nil {
			return nil, err
		}
		fds := args[0]
		if fds.Kind != ExprList {
			return nil, fmt.Errorf("Bad type; expected a list of pollfd [{fd=..., events=...}]")
		}
		for _, p := range fds.List {
			if p.Kind != ExprStruct || p.Tag != "pollfd" {
				return nil, fmt.Errorf("Bad type; expected a pollfd {fd=..., events=..., revents=...}")
			}
			f, err := r.evalInt(p.Fields["fd"])
			if err != nil {
				return nil, err
			}
			ev, err := r.evalInt(p.Fields["events"])
			if err != nil {
				return nil, err
			}
			req.Poll = append(req.Poll, pollReq{FD: int32(f), Events: int16(ev)})
		}
		v, err := ints(1, 2)
		if err != nil {
			return nil, err
		}
		if int(v[0]) != len(req.Poll) {
			return nil, fmt.Errorf("nfds %d does not match %d-element pollfd array", v[0], len(req.Poll))
		}
		req.Ints = []int64{v[1]}
	default:
		return nil, fmt.Errorf("Unknown system call: '%s' (supported: socket, bind, listen, accept, accept4, connect, read, readv, recv, recvfrom, recvmsg, write, writev, send, sendto, sendmsg, fcntl, ioctl, close, shutdown, getsockopt, setsockopt, poll, getsockname, getpeername)", sc.Name)
	}
	if sc.Name == "connect" {
		r.noteConnect(int(req.Ints[0]))
	}
	return req, nil
}

// evalInt evaluates an integer expression: a number, a symbol, or their |.
func (r *run) evalInt(e *Expr) (int64, error) {
	if e == nil {
		return 0, fmt.Errorf("missing argument")
	}
	switch e.Kind {
	case ExprInt:
		return e.Int, nil
	case ExprWord:
		if v, ok := r.cfg.Defines[e.Str]; ok {
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n, nil
			}
			if s, ok := symbols[v]; ok {
				return s, nil
			}
		}
		if v, ok := symbols[e.Str]; ok {
			return v, nil
		}
		if v, ok := errnoNames[e.Str]; ok {
			return int64(v), nil
		}
		return 0, fmt.Errorf("bad symbol %q (not a known constant)", e.Str)
	case ExprBinary:
		if e.Op == "|" {
			a, err := r.evalInt(e.L)
			if err != nil {
				return 0, err
			}
			b, err := r.evalInt(e.R)
			return a | b, err
		}
	case ExprInAddr:
		a, err := netip.ParseAddr(e.Str)
		if err != nil || !a.Is4() {
			return 0, fmt.Errorf("bad IPv4 address %q", e.Str)
		}
		b := a.As4()
		return int64(binary.NativeEndian.Uint32(b[:])), nil
	}
	return 0, fmt.Errorf("Bad type; expected an integer, got %s", e)
}

// bracketInt evaluates "[N]".
func (r *run) bracketInt(e *Expr) (int64, error) {
	if e.Kind != ExprList || len(e.List) != 1 {
		return 0, fmt.Errorf("Expected [<integer>] but got %s", e)
	}
	return r.evalInt(e.List[0])
}

// iovecs reads [{..., N}, ...].
func (r *run) iovecs(e *Expr) ([]int, error) {
	if e == nil || e.Kind != ExprList {
		return nil, fmt.Errorf("Bad type; expected an iovec list [{..., LEN}, ...]")
	}
	var out []int
	for _, x := range e.List {
		if x.Kind != ExprStruct || x.Tag != "iovec" {
			return nil, fmt.Errorf("Bad type; expected an iovec {..., LEN}, got %s", x)
		}
		out = append(out, int(x.Fields["iov_len"].Int))
	}
	return out, nil
}

// optval is setsockopt's value: [int], a linger, or a string.
func (r *run) optval(e *Expr) ([]byte, error) {
	switch {
	case e.Kind == ExprList:
		v, err := r.bracketInt(e)
		if err != nil {
			return nil, err
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(v)), nil
	case e.Kind == ExprString:
		return []byte(e.Str), nil
	case e.Kind == ExprStruct && e.Tag == "linger":
		on, err := r.evalInt(e.Fields["onoff"])
		if err != nil {
			return nil, err
		}
		l, err := r.evalInt(e.Fields["linger"])
		if err != nil {
			return nil, err
		}
		b := binary.NativeEndian.AppendUint32(nil, uint32(on))
		return binary.NativeEndian.AppendUint32(b, uint32(l)), nil
	case e.Kind == ExprIn6Addr:
		a, err := netip.ParseAddr(e.Str)
		if err != nil {
			return nil, fmt.Errorf("cannot parse in6_addr %q", e.Str)
		}
		b := a.As16()
		return b[:], nil
	}
	return nil, fmt.Errorf("unsupported setsockopt value type: %s", e)
}

// bindAddr is what bind(fd, ..., ...) binds.
func (r *run) bindAddr() netip.AddrPort { return netip.AddrPortFrom(r.cfg.LocalIP, r.cfg.BindPort) }

// sockaddr encodes a for fd's family (an IPv4 address is mapped into IPv6
// for an AF_INET6 socket).
func (r *run) sockaddr(a netip.AddrPort, fd int) []byte {
	dom := int(r.cfg.socketDomain())
	if s := r.socks[fd]; s != nil {
		dom = s.domain
	}
	if dom == unix.AF_INET6 {
		b := make([]byte, unix.SizeofSockaddrInet6)
		binary.NativeEndian.PutUint16(b, unix.AF_INET6)
		binary.BigEndian.PutUint16(b[2:], a.Port())
		ip := a.Addr().As16() // As16 maps an IPv4 address
		copy(b[8:], ip[:])
		return b
	}
	b := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], a.Port())
	ip := a.Addr().As4()
	copy(b[4:], ip[:])
	return b
}

// sockaddrExpr encodes {sa_family=AF_INET, sin_port=htons(P),
// sin_addr=inet_addr("A")}.
func (r *run) sockaddrExpr(e *Expr) ([]byte, error) {
	fam, err := r.evalInt(e.Fields["sa_family"])
	if err != nil {
		return nil, err
	}
	port, err := r.evalInt(e.Fields["sin_port"])
	if err != nil {
		return nil, err
	}
	ae := e.Fields["sin_addr"]
	if ae == nil || (ae.Kind != ExprInAddr && ae.Kind != ExprIn6Addr) {
		return nil, fmt.Errorf("sockaddr needs sin_addr=inet_addr(\"...\")")
	}
	a, err := netip.ParseAddr(ae.Str)
	if err != nil {
		return nil, fmt.Errorf("invalid address %q", ae.Str)
	}
	switch {
	case fam == unix.AF_INET && a.Is4():
		b := make([]byte, unix.SizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], uint16(port))
		ip := a.As4()
		copy(b[4:], ip[:])
		return b, nil
	case fam == unix.AF_INET6:
		b := make([]byte, unix.SizeofSockaddrInet6)
		binary.NativeEndian.PutUint16(b, unix.AF_INET6)
		binary.BigEndian.PutUint16(b[2:], uint16(port))
		ip := a.As16()
		copy(b[8:], ip[:])
		return b, nil
	}
	return nil, fmt.Errorf("invalid %s address %q", map[bool]string{true: "IPv4", false: "IPv6"}[fam == unix.AF_INET], ae.Str)
}

// portOf reads the port of a sockaddr the executor returned.
func portOf(sa []byte) uint16 {
	if len(sa) < 4 {
		return 0
	}
	return binary.BigEndian.Uint16(sa[2:])
}

// checkResult compares a returned call with the script, and records what
// the call did (new sockets).
func (r *run) checkResult(e *Event, c *pending) error {
	sc := e.Syscall
	fail := func(format string, args ...any) error {
		return r.lineErr(e.Line, "runtime error in %s call: %s", sc.Name, fmt.Sprintf(format, args...))
	}
	got := c.resp
	r.logf("%s %s = %d%s", secs(c.doneAt), sc, got.Ret, errnoSuffix(got))
	want, err := r.evalInt(sc.Result)
	if err != nil {
		return fail("bad result %s: %v", sc.Result, err)
	}
	if got.Ret == -1 {
		en := unix.Errno(got.Errno)
		if want != -1 {
			return fail("Expected result %d but got -1 with errno %d (%s)", want, got.Errno, en.Error())
		}
		if sc.Errno == "" {
			return fail("Expected result -1 without an errno, but the call failed with errno %d (%s); write the errno after the result", got.Errno, errnoName(en))
		}
		wantErr, ok := errnoNames[sc.Errno]
		if !ok {
			return fail("unknown errno %s", sc.Errno)
		}
		if en != wantErr {
			return fail("Expected errno %d (%s) but got %d (%s)", int(wantErr), sc.Errno, got.Errno, errnoName(en))
		}
		return nil
	}
	if got.Ret != want {
		return fail("Expected result %d but got %d", want, got.Ret)
	}
	if sc.Errno != "" {
		return fail("Expected errno %s but the call succeeded", sc.Errno)
	}
	return r.afterCall(e, c, fail)
}

func errnoSuffix(r response) string {
	if r.Ret == -1 {
		return " " + errnoName(unix.Errno(r.Errno))
	}
	return ""
}

// afterCall checks a successful call's outputs and records its effects.
func (r *run) afterCall(e *Event, c *pending, fail func(string, ...any) error) error {
	sc, got, req := e.Syscall, c.resp, c.req
	fd := 0
	if len(req.Ints) > 0 {
		fd = int(req.Ints[0])
	}
	switch sc.Name {
	case "socket":
		s := &sock{fd: int(got.Ret), domain: int(req.Ints[0]), proto: TCP}
		typ := req.Ints[1] & 0xf
		switch {
		case typ == unix.SOCK_DGRAM && (req.Ints[2] == unix.IPPROTO_ICMP || req.Ints[2] == unix.IPPROTO_ICMPV6):
			s.proto = ICMP
		case typ == unix.SOCK_DGRAM:
			s.proto = UDP
		}
		r.socks[s.fd] = s
	case "bind":
		if s := r.socks[fd]; s != nil {
			s.localPort = portOf(req.Addr)
			if s.proto != TCP {
				r.datagramConn(s)
			}
		}
	case "listen":
		if s := r.socks[fd]; s != nil {
			r.listener = s
			r.sut = nil // the next SYN makes a new connection
		}
	case "accept", "accept4":
		port := portOf(got.Out)
		for _, cn := range r.conns {
			if cn.passive && cn.remote.Port() == port {
				r.socks[int(got.Ret)] = &sock{fd: int(got.Ret), domain: r.socks[fd].domainOr(r.cfg), proto: TCP, conn: cn}
			}
		}
	case "close":
		delete(r.socks, fd)
	case "ioctl":
		if len(sc.Args) == 3 {
			want, _ := r.bracketInt(sc.Args[2])
			if int64(got.OutLen) != want {
				return fail("Bad ioctl optval: expected: %d actual: %d", want, got.OutLen)
			}
		}
	case "recvmsg":
		m := sc.Args[1]
		if fe := m.Fields["msg_flags"]; fe != nil {
			want, err := r.evalInt(fe)
			if err != nil {
				return fail("%v", err)
			}
			if int(want) != got.MsgFlags {
				return fail("Expected msg_flags 0x%08X but got 0x%08X", want, got.MsgFlags)
			}
		}
	case "getsockopt":
		return r.checkOptval(sc, got, fail)
	case "poll":
		for i, p := range sc.Args[0].List {
			re := p.Fields["revents"]
			want := int64(0)
			if re != nil {
				v, err := r.evalInt(re)
				if err != nil {
					return fail("%v", err)
				}
				want = v
			}
			if i < len(got.Revents) && int64(uint16(got.Revents[i])) != want {
				return fail("pollfd revents mismatch; expected %#x but got %#x", want, uint16(got.Revents[i]))
			}
		}
	}
	return nil
}

func (s *sock) domainOr(cfg *Config) int {
	if s == nil {
		return int(cfg.socketDomain())
	}
	return s.domain
}

// checkOptval compares getsockopt's value and length with the script's.
func (r *run) checkOptval(sc *Syscall, got response, fail func(string, ...any) error) error {
	if sc.Args[4].Kind != ExprEllipsis {
		want, _ := r.bracketInt(sc.Args[4])
		if int64(got.OutLen) != want {
			return fail("Bad getsockopt optlen: expected: %d actual: %d", want, got.OutLen)
		}
	}
	val := got.Out
	e := sc.Args[3]
	switch {
	case e.Kind == ExprEllipsis:
	case e.Kind == ExprList:
		want, err := r.bracketInt(e)
		if err != nil {
			return fail("%v", err)
		}
		if len(val) < 4 {
			return fail("Bad getsockopt optval: %d bytes, not an int", len(val))
		}
		if v := int64(int32(binary.NativeEndian.Uint32(val))); v != want {
			return fail("Bad getsockopt optval: expected: %d actual: %d", want, v)
		}
	case e.Kind == ExprString:
		if !bytes.Equal(val, []byte(e.Str)) {
			return fail("Bad getsockopt optval: expected: %q actual: %q", e.Str, bytes.TrimRight(val, "\x00"))
		}
	case e.Kind == ExprStruct && e.Tag == "linger":
		on, _ := r.evalInt(e.Fields["onoff"])
		l, _ := r.evalInt(e.Fields["linger"])
		if len(val) < 8 || int64(binary.NativeEndian.Uint32(val)) != on || int64(binary.NativeEndian.Uint32(val[4:])) != l {
			return fail("Bad getsockopt optval: expected {onoff=%d, linger=%d}", on, l)
		}
	case e.Kind == ExprStruct && e.Tag == "list":
		// tcp_info fields: {tcpi_state=TCP_ESTABLISHED, tcpi_snd_cwnd=10}
		for _, name := range e.Order {
			f, ok := tcpInfoFields[name]
			if !ok {
				return fail("unknown field %s (tcp_info fields are named as in linux/tcp.h, such as tcpi_snd_cwnd)", name)
			}
			if f.off >= len(val) {
				return fail("tcp_info has no %s (only %d bytes returned)", name, len(val))
			}
			var v int64
			switch f.size {
			case -1:
				v = int64(val[f.off]>>f.shift) & 0xf
			case 1:
				v = int64(val[f.off])
			case 4:
				v = int64(binary.NativeEndian.Uint32(val[f.off:]))
			case 8:
				v = int64(binary.NativeEndian.Uint64(val[f.off:]))
			}
			want, err := r.evalInt(e.Fields[name])
			if err != nil {
				return fail("%s: %v", name, err)
			}
			if v != want {
				return fail("Bad getsockopt TCP_INFO: expected %s=%d but got %d", name, want, v)
			}
		}
	default:
		return fail("unsupported getsockopt value type: %s", e)
	}
	return nil
}
