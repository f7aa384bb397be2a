package server

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ustack/ustack/hostports"
	"github.com/ustack/ustack/portd"
)

// What clients cost portd in descriptors, which it has a fixed number of
// (RLIMIT_NOFILE): portd accounts for them and refuses a request that
// would use up the last ones, instead of failing in the middle of a
// session's set-up or, worse, in accept.
const (
	// sessionFds: the packet socket and portd's duplicate of it, portd's
	// end of the frame socket, the client's end until it is sent, the
	// nftables table's netlink socket, and one for a netlink socket of a
	// moment (removing stale tables).
	sessionFds = 6
	// fdHeadroom is kept free for what is not accounted: the listener,
	// the log, a transient socket of the Go runtime or of nftables, and
	// the accept of a connection that is then refused.
	fdHeadroom = 32
	// spareConns are the connections a user may have beyond its session
	// limit: ustack portd status, a session being opened as one closes.
	spareConns = 4
)

// cost is what a user holds through portd, or asks for: connections,
// sessions, ports (TCP and UDP each counted), the ports of the host's
// ephemeral range among them (each port number once), and the descriptors
// they take. A reserved port takes one socket per shared address.
type cost struct{ conns, sessions, ports, ephemeral, fds int }

func (c *cost) add(d cost, sign int) {
	c.conns += sign * d.conns
	c.sessions += sign * d.sessions
	c.ports += sign * d.ports
	c.ephemeral += sign * d.ephemeral
	c.fds += sign * d.fds
}

// portsCost is what holding n more ports on addrs addresses costs.
func portsCost(n, addrs int) cost { return cost{ports: n, fds: n * addrs} }

// raiseNoFile raises portd's soft descriptor limit to the hard one and
// returns the descriptors left for clients: the limit less those open now
// and fdHeadroom.
func raiseNoFile() (free, limit int) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 20, 0
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			rl = raised
		}
	}
	limit = int(min(rl.Cur, 1<<30))
	open := 0
	if names, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(names)
	}
	return limit - open - fdHeadroom, limit
}

// DescriptorLimit is portd's descriptor limit (RLIMIT_NOFILE, raised to
// the hard limit by Listen), for its log.
func (s *Server) DescriptorLimit() int { return s.fdLimit }

// charge takes c from the budgets of ss's user and of portd and adds it to
// *into, or refuses it, naming the limit. Root has no limits but portd's
// descriptors.
func (s *Server) charge(ss *session, c cost, into *cost, what string) error {
	pol := s.policy.Load()
	lim, rule, limited := pol.LimitsFor(ss.cred)
	if rule == "" {
		rule = "the default"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.usage[ss.cred.UID]
	if u == nil {
		u = &cost{}
		s.usage[ss.cred.UID] = u
	}
	switch {
	case limited && c.conns > 0 && u.conns+c.conns > lim.Sessions+spareConns:
		return s.refuseLocked(portd.CodeLimit, "%s for %s: the user has %d connections to portd open, the most allowed (%d sessions by %s, and %d more)",
			what, ss.who(), u.conns, lim.Sessions, rule, spareConns)
	case limited && c.sessions > 0 && u.sessions+c.sessions > lim.Sessions:
		return s.refuseLocked(portd.CodeLimit, "%s for %s: the user has %d sessions open, the most the policy %s allows (%s: sessions %d)",
			what, ss.who(), u.sessions, pol.Source, rule, lim.Sessions)
	case limited && c.ports > 0 && u.ports+c.ports > lim.Ports:
		return s.refuseLocked(portd.CodeLimit, "%s for %s: %d more ports would make %d, over the %d the policy %s allows the user (%s: ports %d; an ephemeral block of N counts 2N)",
			what, ss.who(), c.ports, u.ports+c.ports, lim.Ports, pol.Source, rule, lim.Ports)
	case c.ephemeral > 0 && s.ephemeralHeld+c.ephemeral > ephemeralShare():
		return s.refuseLocked(portd.CodeLimit, "%s for %s: %d ephemeral ports would make %d held by portd's clients, over the half of the host's ephemeral range (%d) that portd gives out",
			what, ss.who(), c.ephemeral, s.ephemeralHeld+c.ephemeral, ephemeralShare())
	case c.fds > s.fdFree:
		return s.refuseLocked(portd.CodeLimit, "%s for %s: it takes %d descriptors and portd has %d left (RLIMIT_NOFILE %d): ask for fewer ports, end other sessions, or raise portd's LimitNOFILE",
			what, ss.who(), c.fds, max(s.fdFree, 0), s.fdLimit)
	}
	u.add(c, 1)
	s.fdFree -= c.fds
	s.ephemeralHeld += c.ephemeral
	into.add(c, 1)
	return nil
}

// ephemeralShare is how many ports of the host's ephemeral range portd
// gives its clients at most, all together: half, so that the host's own
// programs always have the other half for their connections.
func ephemeralShare() int {
	lo, hi := hostports.EphemeralRange()
	return (hi - lo + 1) / 2
}

// uncharge gives back c of what *from holds.
func (s *Server) uncharge(ss *session, c cost, from *cost) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unchargeLocked(ss, c, from)
}

// unchargeSession gives back all that ss's session holds.
func (s *Server) unchargeSession(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unchargeLocked(ss, ss.charged, &ss.charged)
}

func (s *Server) unchargeLocked(ss *session, c cost, from *cost) {
	if u := s.usage[ss.cred.UID]; u != nil {
		u.add(c, -1)
		if *u == (cost{}) {
			delete(s.usage, ss.cred.UID)
		}
	}
	s.fdFree += c.fds
	s.ephemeralHeld -= c.ephemeral
	from.add(c, -1)
}

// refuseLocked is refuse for a caller holding s.mu.
func (s *Server) refuseLocked(code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s.logf("portd: refused: %s", msg)
	return &portd.RefusedError{Code: code, Msg: msg}
}
