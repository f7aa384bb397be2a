// Package server is ustack portd, the port server that the ustack portd
// command runs as root: it serves the protocol of package portd on a unix
// socket and, for each client the policy allows, holds a share of a host
// interface (package hostshare) and carries the client's frames between
// the frame socket it hands the client and the share's packet socket,
// checking each frame the client sends. Only the command links it;
// programs with a stack link package portd, the client.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/portd"
)

// Server is ustack portd: it listens on a unix socket and serves sessions.
type Server struct {
	path   string
	ln     *net.UnixListener
	policy atomic.Pointer[Policy]
	logf   func(string, ...any)

	mu       sync.Mutex
	sessions map[uint64]*session
	// leaving are the sessions endSession took out of sessions and is
	// releasing: a port one of them holds is the host's for a moment
	// more, and a client asking for it waits for that (see allowed).
	leaving map[uint64]*session
	nextID  uint64
	closed  bool
	// usage is what each user holds (see charge); fdFree the descriptors
	// left for clients out of fdLimit; ephemeralHeld the ports of the
	// host's ephemeral range that all clients hold.
	usage           map[uint32]*cost
	fdFree, fdLimit int
	ephemeralHeld   int
	// releasing counts the sessions endSession has taken out of sessions
	// and not yet released; closeDone is closed when Close has finished.
	releasing sync.WaitGroup
	closeDone chan struct{}
}

// Listen removes what a portd that died left behind (a stale socket file,
// and the nftables tables an older portd made without an owner), then
// listens on path (mode 0666: who may do what is decided per request from
// the peer's credentials). It raises its descriptor limit to the hard one
// and keeps account of them from here on (see charge). It refuses to
// start when another portd answers on path.
func Listen(path string, pol *Policy, logf func(string, ...any)) (*Server, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if pol == nil {
		pol = &Policy{Source: "(none)"}
	}
	gone, err := hostports.RemoveStale()
	if err != nil {
		return nil, err
	}
	for _, t := range gone {
		logf("portd: removed the nftables table %s of a process that no longer exists", t)
	}
	if err := socketDir(filepath.Dir(path), logf); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unixpacket", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: another ustack portd is serving it (stop it first)", path)
	}
	os.Remove(path) // a socket file left by a portd that died
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{path: path, ln: ln, logf: logf, sessions: map[uint64]*session{}, leaving: map[uint64]*session{},
		usage: map[uint32]*cost{}, closeDone: make(chan struct{})}
	s.fdFree, s.fdLimit = raiseNoFile()
	s.policy.Store(pol)
	return s, nil
}

// socketDir makes the socket's directory, if it is missing, mode 0755
// whatever the umask: every user's stack must reach the socket. One that
// exists is the administrator's (systemd's RuntimeDirectory, say) and is
// left as it is, but if other users cannot search it, that is logged.
func socketDir(dir string, logf func(string, ...any)) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o001 == 0 {
		logf("portd: %s (mode %04o) is not searchable by other users: only root will reach the socket", dir, fi.Mode().Perm())
	}
	return nil
}

// SetPolicy replaces the policy for requests from now on; ports already
// held stay held.
func (s *Server) SetPolicy(p *Policy) { s.policy.Store(p) }

// Serve accepts clients until ctx ends or the server is closed. No error
// of accepting a client ends it: out of descriptors (EMFILE, ENFILE) or
// memory, it logs that once, waits a moment and goes on, so that no client
// can stop portd for the others.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	const maxBackoff = time.Second
	backoff := time.Duration(0)
	for {
		c, err := s.ln.AcceptUnix()
		if err == nil {
			if backoff > 0 {
				s.logf("portd: accepting clients again")
				backoff = 0
			}
			go s.serveConn(c)
			continue
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil
		}
		if backoff == 0 {
			s.logf("portd: accepting a client: %v; retrying until it works (logged once)", err)
			backoff = 5 * time.Millisecond
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
}

// Close stops listening and releases every session. It returns, to every
// caller, once all is released, including the sessions whose clients had
// just gone and that were being released already: a portd that exits then
// leaves no table behind.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closeDone
		return nil
	}
	s.closed = true
	sessions := s.sessions
	s.sessions = map[uint64]*session{}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, ss := range sessions {
		ss.close()
	}
	s.releasing.Wait()
	close(s.closeDone)
	return err
}

// Holders lists the open sessions.
func (s *Server) Holders() []portd.Holder { return s.holders(func(*session) bool { return true }) }

func (s *Server) holders(show func(*session) bool) []portd.Holder {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hs []portd.Holder
	for _, ss := range s.sessions {
		if show(ss) {
			hs = append(hs, ss.holder())
		}
	}
	slices.SortFunc(hs, func(a, b portd.Holder) int { return int(a.ID) - int(b.ID) })
	return hs
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	cred, err := peerCred(c)
	if err != nil {
		s.logf("portd: a client's credentials: %v", err)
		return
	}
	ss := &session{srv: s, cred: cred, user: userName(cred.UID), released: make(chan struct{})}
	var conn cost
	if err := s.charge(ss, cost{conns: 1, fds: 1}, &conn, "a connection"); err != nil {
		var re *portd.RefusedError
		errors.As(err, &re)
		// The refusal answers the client's first request, which comes at
		// once: a socket closed with the request unread would reset the
		// client before it read the answer.
		c.SetReadDeadline(time.Now().Add(time.Second))
		c.ReadMsgUnix(make([]byte, 64<<10), nil)
		msg, _ := json.Marshal(&portd.Reply{Code: re.Code, Error: re.Msg})
		c.WriteMsgUnix(msg, nil, nil)
		return
	}
	defer s.uncharge(ss, conn, &conn)
	defer s.endSession(ss)
	buf := make([]byte, 64<<10)
	for {
		n, _, _, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil || n == 0 {
			return // the client closed the connection or died
		}
		var req portd.Request
		var rep portd.Reply
		var passFile *os.File
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			rep.Code, rep.Error = portd.CodeBadRequest, "malformed request: "+err.Error()
		} else {
			passFile, err = s.handle(ss, &req, &rep)
			if err != nil {
				var re *portd.RefusedError
				if !errors.As(err, &re) {
					s.logf("portd: %s: %s: %v", ss.who(), req.Op, err)
					re = &portd.RefusedError{Code: portd.CodeBadRequest, Msg: err.Error()}
				}
				rep.Code, rep.Error = re.Code, re.Msg
			}
		}
		msg, _ := json.Marshal(&rep)
		var oob []byte
		if passFile != nil {
			oob = unix.UnixRights(int(passFile.Fd()))
		}
		_, _, err = c.WriteMsgUnix(msg, oob, nil)
		if passFile != nil {
			passFile.Close() // the client has its copy now
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) handle(ss *session, req *portd.Request, rep *portd.Reply) (*os.File, error) {
	switch req.Op {
	case portd.OpStatus:
		// A user sees their own sessions, root everyone's: who holds
		// what, from which process, is no one else's business.
		rep.Holders = s.holders(func(o *session) bool { return ss.cred.UID == 0 || o.cred.UID == ss.cred.UID })
		return nil, nil
	case portd.OpOpen:
		if ss.id != 0 {
			return nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "this connection has a session already"}
		}
		// Even a session that asks for no port sends and receives on the
		// interface: the policy must name it for the user.
		if pol := s.policy.Load(); !pol.MaySession(ss.cred, req.Iface) {
			return nil, s.refuse(ss, portd.CodeDenied, "a session on %s for %s: no rule of the policy %s allows the user on the interface", req.Iface, ss.who(), pol.Source)
		}
		if err := s.charge(ss, cost{sessions: 1, fds: sessionFds}, &ss.charged, "a session on "+req.Iface); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.unchargeSession(ss)
			return nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "portd is shutting down"}
		}
		s.nextID++
		ss.id = s.nextID
		s.sessions[ss.id] = ss
		s.mu.Unlock()
		info, f, err := ss.open(req)
		if err != nil {
			s.endSession(ss)
			return nil, err
		}
		s.logf("portd: session %d: %s holds %s on %s (tcp %s, udp %s)", ss.id, ss.who(), joinAddrs(ss.addrs), ss.iface,
			portsOrNone(ss.share.Ports(hostports.TCP)), portsOrNone(ss.share.Ports(hostports.UDP)))
		rep.Session = info
		return f, nil
	case portd.OpReserve:
		if ss.id == 0 || ss.ver == nil {
			return nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "reserve before open"}
		}
		for _, p := range req.Ports {
			if err := ss.reserve(p); err != nil {
				return nil, err
			}
			s.logf("portd: session %d: %s holds %s on %s too", ss.id, ss.who(), p, ss.iface)
		}
		return nil, nil
	case portd.OpRelease:
		if ss.id == 0 || ss.ver == nil {
			return nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: "release before open"}
		}
		for _, p := range req.Ports {
			if err := ss.release(p); err != nil {
				return nil, err
			}
			s.logf("portd: session %d: %s gave back %s on %s", ss.id, ss.who(), p, ss.iface)
		}
		return nil, nil
	}
	return nil, &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("unknown request %q", req.Op)}
}

// allowed checks that the policy grants p to the session's client and that
// no other client holds it, waiting for a client that has ended to let go
// of it; a refusal is logged.
func (s *Server) allowed(ss *session, p portd.Port) error {
	if p.Proto != hostports.TCP && p.Proto != hostports.UDP || p.Port == 0 {
		return &portd.RefusedError{Code: portd.CodeBadRequest, Msg: fmt.Sprintf("%s: want a tcp or udp port from 1 to 65535", p)}
	}
	pol := s.policy.Load()
	if !pol.Allows(ss.cred, ss.iface, p.Proto, p.Port) {
		what := "no rule grants it"
		if p.Port < 1024 {
			what = "it is privileged and no rule names it"
		}
		return s.refuse(ss, portd.CodeDenied, "%s on %s for %s: %s in the policy %s", p, ss.iface, ss.who(), what, pol.Source)
	}
	s.mu.Lock()
	var other *session
	for _, o := range s.sessions {
		if o != ss && o.holds(ss.addrs, p) {
			other = o
		}
	}
	var leaving []*session
	for _, o := range s.leaving {
		if o.holds(ss.addrs, p) {
			leaving = append(leaving, o)
		}
	}
	s.mu.Unlock()
	if other != nil {
		return s.refuse(ss, portd.CodeInUse, "%s on %s for %s: held by %s", p, ss.iface, ss.who(), other.who())
	}
	// A client that ends while its successor starts (one ustack run after
	// another) is still being released: the successor waits, which takes
	// milliseconds, instead of finding the port held by the host.
	for _, o := range leaving {
		s.logf("portd: session %d: %s waits for session %d to release %s", ss.id, ss.who(), o.id, p)
		<-o.released
	}
	return nil
}

// refuse logs a refused request and returns it as an error for the client.
func (s *Server) refuse(ss *session, code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s.logf("portd: refused: %s", msg)
	return &portd.RefusedError{Code: code, Msg: msg}
}

// releaseHook, when set (by tests), runs as endSession begins a release.
var releaseHook atomic.Pointer[func()]

// endSession releases a session once, whichever of its connection and its
// pumps ends first.
func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	cur, ok := s.sessions[ss.id]
	if ok && cur == ss {
		delete(s.sessions, ss.id)
		s.leaving[ss.id] = ss
		// Under mu, before Close can take it: Close waits for this.
		s.releasing.Add(1)
		defer s.releasing.Done()
	}
	s.mu.Unlock()
	if !ok || cur != ss {
		return
	}
	if hook := releaseHook.Load(); hook != nil {
		(*hook)()
	}
	err := ss.close()
	s.mu.Lock()
	delete(s.leaving, ss.id)
	s.mu.Unlock()
	s.unchargeSession(ss)
	close(ss.released)
	if err != nil {
		s.logf("portd: session %d (%s): releasing: %v", ss.id, ss.who(), err)
	}
	if ss.iface != "" {
		s.logf("portd: session %d: %s released everything on %s (frames sent %d, refused %d, received %d)",
			ss.id, ss.who(), ss.iface, ss.sent.Load(), ss.refused.Load(), ss.received.Load())
	}
}

// peerCred reads who is on the other end of c from the kernel.
func peerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred Cred
	var cerr error
	rc.Control(func(fd uintptr) {
		var uc *unix.Ucred
		uc, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		cred = Cred{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}
		cred.Groups, cerr = peerGroups(int(fd))
	})
	return cred, cerr
}

// peerGroups reads SO_PEERGROUPS: the supplementary groups of the peer.
func peerGroups(fd int) ([]uint32, error) {
	gids := make([]uint32, 64)
	for {
		size := uint32(len(gids) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&gids[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == unix.ERANGE {
			gids = make([]uint32, size/4+1)
			continue
		}
		if errno != 0 {
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
		return gids[:size/4], nil
	}
}

func portsOrNone(ports []uint16) string {
	if len(ports) == 0 {
		return "none"
	}
	return portd.PortRanges(ports)
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(uid))
}
