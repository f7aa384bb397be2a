package hostports

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TablePrefix starts the name of every nftables table ustack makes; the
// owner's pid follows, so a later start can tell a dead owner's table.
const TablePrefix = "ustack_"

// PortdTablePrefix starts the tables that ustack portd makes for its
// clients, ustack_portd_<portd pid>_<session>: the pid is portd's, so the
// tables of a portd that died are recognisable as stale.
const PortdTablePrefix = TablePrefix + "portd_"

// Firewall is an nftables table (family inet) of one stack:
//
//	table inet ustack_<pid> {
//	  set addr4 { type ipv4_addr; elements = { ADDRS } }
//	  set addr6 { type ipv6_addr; elements = { ADDRS } }
//	  set tcp { type inet_service; elements = { PORTS } }
//	  set udp { type inet_service; elements = { PORTS } }
//	  chain input {
//	    type filter hook input priority filter - 1; policy accept;
//	    iifname IFACE ip daddr @addr4 meta l4proto tcp th dport @tcp counter drop
//	    ... the same for udp, and for ip6 daddr @addr6
//	  }
//	}
//
// Why input drop is enough: the host kernel answers for a port it has no
// connection on only in reaction to a packet it receives (a RST for a TCP
// segment, ICMP port unreachable for a UDP datagram); it never originates
// packets for the stack's connections, whose segments leave through the
// packet socket and bypass the kernel's IP output. Dropping the stack's
// ports at the input hook therefore silences the kernel for them, while the
// stack's packet socket, which sees frames when the device hands them up,
// before IP and netfilter, has already taken its copy. The priority (one
// before the filter tables of iptables and of most nft rule sets) makes the
// drop come before any REJECT the host's own firewall may have; a drop is
// final for the packet whatever other chains say.
//
// The table is owned by the netlink socket that made it (NFT_TABLE_F_OWNER,
// Linux 5.12): the kernel removes it the moment that socket closes, so a
// process killed with SIGKILL leaves no table that would go on dropping
// its peers' packets (they are refused by the kernel instead), and no
// other process can change it. RemoveStale remains for the tables of
// older kernels, which outlive their owner.
//
// Only packets arriving on the shared interface are dropped: the stack
// cannot see packets for the shared address that arrive elsewhere (from
// the host itself over lo, for one), and those are better refused by the
// kernel at once (its reserving socket does not listen) than left to time
// out.
type Firewall struct {
	Table string

	mu       sync.Mutex
	conn     *nftables.Conn
	table    *nftables.Table
	tcp, udp *nftables.Set
	closed   bool
}

// ErrNotPermitted is wrapped when the caller may not change the host's
// firewall (CAP_NET_ADMIN).
var ErrNotPermitted = errors.New("not permitted")

// StackTable is the name of the table of a stack that holds its ports
// itself: ustack_<pid>.
func StackTable() string { return fmt.Sprintf("%s%d", TablePrefix, os.Getpid()) }

// PortdTable is the name of the table ustack portd makes for its session:
// ustack_portd_<pid>_<session>.
func PortdTable(session uint64) string {
	return fmt.Sprintf("%s%d_%d", PortdTablePrefix, os.Getpid(), session)
}

// NewFirewallTable installs the table named table (StackTable or
// PortdTable: another name must start with TablePrefix and carry the
// owner's pid as tablePid reads it, or RemoveStale will not recognise it)
// for a stack sharing iface's addrs.
func NewFirewallTable(table, iface string, addrs []netip.Addr) (*Firewall, error) {
	var nl *netlink.Conn
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		nl = c
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if err := addOwnedTable(nl, table); err != nil {
		conn.CloseLasting()
		return nil, nftErr("installing table "+table, err)
	}
	f, err := newFirewall(conn, table, iface, addrs)
	if err != nil {
		conn.CloseLasting() // removes the table
		return nil, err
	}
	return f, nil
}

// tableFlagOwner is NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h), which
// x/sys does not name.
const tableFlagOwner = 0x2

// addOwnedTable makes the inet table name owned by the netlink socket nl.
// google/nftables sends no table flags, so this one message is written
// here, on the socket the rest of the table then goes through.
func addOwnedTable(nl *netlink.Conn, name string) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: binary.BigEndian.AppendUint32(nil, tableFlagOwner)},
	})
	if err != nil {
		return err
	}
	// struct nfgenmsg: family, version, resource id (big-endian).
	genmsg := func(family uint8, res uint16) []byte {
		return binary.BigEndian.AppendUint16([]byte{family, unix.NFNETLINK_V0}, res)
	}
	batch := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: genmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
			Data: append(genmsg(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: genmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := nl.SendMessages(batch); err != nil {
		return err
	}
	_, err = nl.Receive() // the acknowledgement, or the kernel's error
	return err
}

func newFirewall(conn *nftables.Conn, table, iface string, addrs []netip.Addr) (*Firewall, error) {
	f := &Firewall{Table: table, conn: conn}
	f.table = &nftables.Table{Name: f.Table, Family: nftables.TableFamilyINet}
	var a4, a6 []nftables.SetElement
	for _, a := range addrs {
		if a.Is4() {
			a4 = append(a4, nftables.SetElement{Key: a.AsSlice()})
		} else {
			a6 = append(a6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	sets := map[string]*nftables.Set{}
	for _, s := range []struct {
		name  string
		typ   nftables.SetDatatype
		elems []nftables.SetElement
	}{
		{"addr4", nftables.TypeIPAddr, a4},
		{"addr6", nftables.TypeIP6Addr, a6},
		{"tcp", nftables.TypeInetService, nil},
		{"udp", nftables.TypeInetService, nil},
	} {
		set := &nftables.Set{Table: f.table, Name: s.name, KeyType: s.typ}
		if err := conn.AddSet(set, s.elems); err != nil {
			return nil, fmt.Errorf("nftables set %s: %w", s.name, err)
		}
		sets[s.name] = set
	}
	f.tcp, f.udp = sets["tcp"], sets["udp"]
	chain := conn.AddChain(&nftables.Chain{
		Name:     "input",
		Table:    f.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1),
	})
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, iface)
	for _, fam := range []struct {
		nfproto byte
		set     *nftables.Set
		off     uint32 // destination address in the network header
		size    uint32
	}{{unix.NFPROTO_IPV4, sets["addr4"], 16, 4}, {unix.NFPROTO_IPV6, sets["addr6"], 24, 16}} {
		for _, l4 := range []struct {
			proto byte
			set   *nftables.Set
		}{{unix.IPPROTO_TCP, f.tcp}, {unix.IPPROTO_UDP, f.udp}} {
			conn.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.nfproto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.off, Len: fam.size},
				&expr.Lookup{SourceRegister: 1, SetName: fam.set.Name, SetID: fam.set.ID},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4.proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: l4.set.Name, SetID: l4.set.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	if err := conn.Flush(); err != nil {
		return nil, nftErr("installing table "+f.Table, err)
	}
	return f, nil
}

func nftErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("nftables: %s: %w (%w)", what, ErrNotPermitted, err)
	}
	return fmt.Errorf("nftables: %s: %w", what, err)
}

// Add puts ports of proto into the drop set.
func (f *Firewall) Add(proto Proto, ports ...uint16) error {
	return f.change("adding ports to", proto, ports, (*nftables.Conn).SetAddElements)
}

// Remove takes ports of proto out of the drop set: the kernel answers for
// them again.
func (f *Firewall) Remove(proto Proto, ports ...uint16) error {
	return f.change("removing ports from", proto, ports, (*nftables.Conn).SetDeleteElements)
}

func (f *Firewall) change(what string, proto Proto, ports []uint16, op func(*nftables.Conn, *nftables.Set, []nftables.SetElement) error) error {
	if len(ports) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("nftables: firewall removed")
	}
	// One batch of thousands of elements overflows the kernel's netlink
	// reply (ERANGE): a large ephemeral block goes in several.
	for len(ports) > 0 {
		n := min(len(ports), nftBatch)
		elems := make([]nftables.SetElement, n)
		for i, p := range ports[:n] {
			elems[i] = nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p)}
		}
		if err := op(f.conn, f.set(proto), elems); err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		if err := f.conn.Flush(); err != nil {
			return nftErr(what+" "+f.Table, err)
		}
		ports = ports[n:]
	}
	return nil
}

// nftBatch is how many set elements one change sends at most.
const nftBatch = 512

func (f *Firewall) set(proto Proto) *nftables.Set {
	if proto == UDP {
		return f.udp
	}
	return f.tcp
}

// Ports reads back from the kernel the ports of proto in the drop set (for
// tests and diagnostics).
func (f *Firewall) Ports(proto Proto) ([]uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("nftables: firewall removed")
	}
	elems, err := f.conn.GetSetElements(f.set(proto))
	if err != nil {
		return nil, nftErr("reading "+f.Table, err)
	}
	var ports []uint16
	for _, e := range elems {
		if len(e.Key) == 2 {
			ports = append(ports, binary.BigEndian.Uint16(e.Key))
		}
	}
	return ports, nil
}

// Dropped returns how many packets the table has dropped for the stack.
func (f *Firewall) Dropped() (uint64, error) { return TableDropped(f.Table) }

// TableDropped returns how many packets the ustack table name has dropped
// (for tests and diagnostics).
func TableDropped(name string) (uint64, error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	rules, err := conn.GetRules(table, &nftables.Chain{Name: "input", Table: table})
	if err != nil {
		return 0, nftErr("reading "+name, err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n, nil
}

// Close removes the table.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.conn.DelTable(f.table)
	err := f.conn.Flush()
	// Closing the owning socket removes the table too, should the
	// deletion have failed.
	f.conn.CloseLasting()
	if err != nil {
		return nftErr("removing table "+f.Table, err)
	}
	return nil
}

// RemoveStale deletes the tables of ustack processes that no longer exist
// and returns their names. A table is owned by its process's netlink
// socket and goes with it, even on SIGKILL; these are the tables of
// versions of ustack that made them without an owner. Ports need no such
// care: the reserving sockets die with the process.
func RemoveStale() ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nftErr("listing tables", err)
	}
	var gone []string
	for _, t := range tables {
		pid, ok := tablePid(t.Name)
		if !ok || pid == os.Getpid() || processExists(pid) {
			continue
		}
		// One table per batch: a batch fails whole, and another ustack
		// starting at the same time may have removed this one first.
		conn.DelTable(t)
		if err := conn.Flush(); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return gone, nftErr("removing stale table "+t.Name, err)
		}
		gone = append(gone, t.Name)
	}
	return gone, nil
}

// TableExists reports whether the table name is installed (for tests and
// diagnostics).
func TableExists(name string) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, nftErr("listing tables", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// tablePid returns the owner's pid of a ustack table: ustack_<pid> of a
// stack, ustack_portd_<pid>_<session> of portd.
func tablePid(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, TablePrefix)
	if !ok {
		return 0, false
	}
	if rest, ok := strings.CutPrefix(s, "portd_"); ok {
		var session string
		s, session, ok = strings.Cut(rest, "_")
		if n, err := strconv.Atoi(session); !ok || err != nil || n < 0 {
			return 0, false
		}
	}
	pid, err := strconv.Atoi(s)
	return pid, err == nil && pid > 0
}

// processExists tells whether pid is alive. A pid reused by another process
// keeps a stale table until that process ends too; meanwhile the dead
// stack's ports stay silenced on its interface, though nobody holds them.
func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
