package netview

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ustack/ustack/netstack"
)

// NETLINK_ROUTE, after net/core/rtnetlink.c, net/ipv4/devinet.c,
// fib_semantics.c and net/ipv6/addrconf.c, route.c.

// Values Linux reports that the stack has no notion of.
const (
	ifOperUnknown = 0 // IF_OPER_UNKNOWN: lo's operstate
	ifOperDown    = 2
	ifOperUp      = 6
	txQueueLen    = 1000
	qdisc         = "noqueue" // the stack queues nothing below IP
	foreverLife   = 0xffffffff
	// Metrics Linux gives IPv6 routes: those it makes for addresses, and
	// those a user adds without one.
	metricKernel6 = 256
	metricUser6   = 1024
	rtaNHID       = 30 // RTA_NH_ID: a route through a nexthop object
)

// decode reads a fixed-size kernel struct from the start of b (EINVAL if
// b is too short) and returns the attributes after it.
func decode(b []byte, v any) ([]byte, error) {
	n, err := binary.Decode(b, binary.NativeEndian, v)
	if err != nil {
		return nil, refuse(unix.EINVAL, "message too short for its header")
	}
	return b[min(align(n), len(b)):], nil
}

// parseAttrs reads the attributes of a request by type (the last of a
// type wins).
func parseAttrs(b []byte) (map[uint16][]byte, error) {
	out := map[uint16][]byte{}
	if len(b) == 0 {
		return out, nil
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, refuse(unix.EINVAL, "malformed attributes")
	}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	if ad.Err() != nil {
		return nil, refuse(unix.EINVAL, "malformed attributes")
	}
	return out, nil
}

func attrString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func attrUint32(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(b), true
}

// ipAttr reads an address attribute of the family. One too short is
// refused with ERANGE, as Linux's attribute policies for addresses and
// routes refuse it.
func ipAttr(b []byte, family uint8) (netip.Addr, error) {
	switch {
	case family == unix.AF_INET && len(b) == 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case family == unix.AF_INET6 && len(b) == 16:
		return netip.AddrFrom16([16]byte(b)), nil
	case family == unix.AF_INET && len(b) < 4, family == unix.AF_INET6 && len(b) < 16:
		return netip.Addr{}, refuse(unix.ERANGE, "address attribute too short for its family")
	}
	return netip.Addr{}, refuse(unix.EINVAL, "address of the wrong length for its family")
}

// route answers a NETLINK_ROUTE request.
func (v *View) route(h nlHeader, body []byte, isDump bool, d *dump) (bool, error) {
	family := uint8(unix.AF_UNSPEC)
	if len(body) > 0 {
		family = body[0]
	}
	switch h.typ {
	case unix.RTM_GETLINK:
		if isDump {
			for _, l := range v.links() {
				d.add(unix.RTM_NEWLINK, v.linkMessage(l)...)
			}
			d.done()
			return true, nil
		}
		return false, v.getLink(h, body, d)
	case unix.RTM_NEWLINK, unix.RTM_SETLINK:
		return false, v.setLink(h, body)
	case unix.RTM_DELLINK:
		return false, refuse(unix.EOPNOTSUPP, "the user-level stack's interfaces cannot be removed")
	case unix.RTM_GETADDR:
		if !isDump {
			return false, refuse(unix.EOPNOTSUPP, "RTM_GETADDR is answered as a dump only")
		}
		var index uint32
		if len(body) >= unix.SizeofIfAddrmsg {
			var m unix.IfAddrmsg
			decode(body, &m)
			index = m.Index
		}
		for _, a := range v.addrs(family) {
			if index == 0 || uint32(a.link.index) == index {
				d.add(unix.RTM_NEWADDR, addrMessage(a)...)
			}
		}
		d.done()
		return true, nil
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		return false, v.changeAddr(h, body)
	case unix.RTM_GETROUTE:
		if !isDump {
			return false, v.getRoute(h, body, d)
		}
		var table uint8
		if len(body) >= unix.SizeofRtMsg {
			var m unix.RtMsg
			rest, _ := decode(body, &m)
			table = m.Table
			if at, err := parseAttrs(rest); err == nil {
				if t, ok := attrUint32(at[unix.RTA_TABLE]); ok {
					table = uint8(t)
				}
			}
		}
		for _, r := range v.routes(family) {
			if table == unix.RT_TABLE_UNSPEC || table == r.table {
				d.add(unix.RTM_NEWROUTE, r.message()...)
			}
		}
		d.done()
		return true, nil
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		return false, v.changeRoute(h, body)
	case unix.RTM_GETNEIGH:
		if !isDump {
			return false, refuse(unix.EOPNOTSUPP, "RTM_GETNEIGH is answered as a dump only")
		}
		var index int32
		if len(body) >= unix.SizeofNdMsg {
			var m unix.NdMsg
			decode(body, &m)
			index = m.Ifindex
		}
		for _, n := range v.neighbours(family) {
			if index == 0 || n.link.index == index {
				d.add(unix.RTM_NEWNEIGH, n.message()...)
			}
		}
		d.done()
		return true, nil
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		return false, v.changeNeighbour(h, body)
	}
	if h.typ&3 == 2 && isDump { // RTM_GET*: rules, qdiscs, netconf... the stack has none
		d.done()
		return true, nil
	}
	return false, refuse(unix.EOPNOTSUPP, fmt.Sprintf("netlink message type %d is not served by the user-level stack", h.typ))
}

// linkMessage is RTM_NEWLINK's ifinfomsg and attributes for l.
func (v *View) linkMessage(l link) [][]byte {
	info := l.info
	up := l.up()
	oper := uint8(ifOperDown)
	switch {
	case info.Flags.Loopback:
		oper = ifOperUnknown
	case up:
		oper = ifOperUp
	}
	mac, brd := l.mac()
	st := info.Stats
	// struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes,
	// tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped, then 17
	// counters the stack does not keep.
	var stats64 [25]uint64
	stats64[0], stats64[1] = st.Rx.Packets.Value(), st.Tx.Packets.Value()
	stats64[2], stats64[3] = st.Rx.Bytes.Value(), st.Tx.Bytes.Value()
	stats64[6] = st.DisabledRx.Packets.Value()
	stats64[7] = st.TxPacketsDroppedNoBufferSpace.Value()
	var stats32 [24]uint32 // struct rtnl_link_stats, the same counters cut to 32 bits
	for i := range stats32 {
		stats32[i] = uint32(stats64[i])
	}
	ifi := unix.IfInfomsg{Family: unix.AF_UNSPEC, Type: l.hwType(), Index: l.index, Flags: l.flags()}
	return [][]byte{raw(ifi), attrs(func(ae *netlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, info.Name)
		ae.Uint32(unix.IFLA_TXQLEN, txQueueLen)
		ae.Uint8(unix.IFLA_OPERSTATE, oper)
		ae.Uint8(unix.IFLA_LINKMODE, 0)
		ae.Uint32(unix.IFLA_MTU, info.MTU)
		if !info.Flags.Loopback {
			ae.Uint32(unix.IFLA_MIN_MTU, 68)
			ae.Uint32(unix.IFLA_MAX_MTU, 65535)
		}
		ae.Uint32(unix.IFLA_GROUP, 0)
		ae.Uint32(unix.IFLA_PROMISCUITY, 0)
		ae.Uint32(unix.IFLA_NUM_TX_QUEUES, 1)
		ae.Uint32(unix.IFLA_NUM_RX_QUEUES, 1)
		ae.Uint8(unix.IFLA_CARRIER, b2u8(up))
		ae.String(unix.IFLA_QDISC, qdisc)
		ae.Uint32(unix.IFLA_CARRIER_CHANGES, 0)
		ae.Uint8(unix.IFLA_PROTO_DOWN, 0)
		if mac != nil {
			ae.Bytes(unix.IFLA_ADDRESS, mac)
			ae.Bytes(unix.IFLA_BROADCAST, brd)
		}
		ae.Bytes(unix.IFLA_STATS64, raw(stats64))
		ae.Bytes(unix.IFLA_STATS, raw(stats32))
	})}
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// findLink finds the interface a link request names: by ifi_index, else
// by IFLA_IFNAME (or IFLA_ALT_IFNAME).
func (v *View) findLink(index int32, at map[uint16][]byte) (link, bool, error) {
	if index > 0 {
		l, ok := v.linkByIndex(index)
		return l, ok, nil
	}
	name, ok := at[unix.IFLA_IFNAME]
	if !ok {
		name, ok = at[unix.IFLA_ALT_IFNAME]
	}
	if !ok {
		return link{}, false, refuse(unix.EINVAL, "neither an interface index nor a name")
	}
	l, found := v.linkByName(attrString(name))
	return l, found, nil
}

// getLink answers RTM_GETLINK for one interface.
func (v *View) getLink(h nlHeader, body []byte, d *dump) error {
	var ifi unix.IfInfomsg
	rest, err := decode(body, &ifi)
	if err != nil {
		return err
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	l, ok, err := v.findLink(ifi.Index, at)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(unix.ENODEV, "no such interface")
	}
	d.a.alone(message(unix.RTM_NEWLINK, 0, h.seq, d.pid, v.linkMessage(l)...))
	return nil
}

// Flags a program may ask to change and the stack cannot.
const fixedFlags = unix.IFF_PROMISC | unix.IFF_ALLMULTI | unix.IFF_NOARP | unix.IFF_MULTICAST

// setLink answers RTM_NEWLINK and RTM_SETLINK on an existing interface:
// ip link set DEV up|down|mtu N.
func (v *View) setLink(h nlHeader, body []byte) error {
	var ifi unix.IfInfomsg
	rest, err := decode(body, &ifi)
	if err != nil {
		return err
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	l, ok, _ := v.findLink(ifi.Index, at) // neither index nor name finds no device, as in Linux
	if !ok {
		if h.flags&unix.NLM_F_CREATE != 0 {
			return refuse(unix.EOPNOTSUPP, "the user-level stack cannot create interfaces")
		}
		return refuse(unix.ENODEV, "no such interface")
	}
	if h.typ == unix.RTM_NEWLINK && h.flags&unix.NLM_F_EXCL != 0 {
		return refuse(unix.EEXIST, "the interface exists")
	}
	name := l.info.Name
	if b, ok := at[unix.IFLA_IFNAME]; ok && ifi.Index > 0 && attrString(b) != name {
		return refuse(unix.EOPNOTSUPP, "the user-level stack's interfaces cannot be renamed")
	}
	if b, ok := at[unix.IFLA_ADDRESS]; ok && string(b) != string(l.info.LinkAddress) {
		return refuse(unix.EOPNOTSUPP, "the user-level stack cannot change a hardware address")
	}
	if b, ok := at[unix.IFLA_TXQLEN]; ok {
		if q, _ := attrUint32(b); q != txQueueLen {
			return refuse(unix.EOPNOTSUPP, "the user-level stack has no transmit queue to size")
		}
	}
	for _, t := range []uint16{unix.IFLA_LINKINFO, unix.IFLA_MASTER, unix.IFLA_NET_NS_PID, unix.IFLA_NET_NS_FD, unix.IFLA_GROUP} {
		if _, ok := at[t]; ok {
			return refuse(unix.EOPNOTSUPP, "the user-level stack cannot make this change to an interface")
		}
	}
	want := ifi.Flags
	if ifi.Change != 0 {
		want = ifi.Flags&ifi.Change | l.flags()&^ifi.Change
	}
	changeFlags := ifi.Flags != 0 || ifi.Change != 0
	if changeFlags && (want^l.flags())&fixedFlags != 0 {
		return refuse(unix.EOPNOTSUPP, "the user-level stack cannot change these interface flags")
	}
	if b, ok := at[unix.IFLA_MTU]; ok {
		mtu, ok := attrUint32(b)
		if !ok {
			return refuse(unix.EINVAL, "IFLA_MTU is not a 32-bit value")
		}
		if err := v.st.SetMTU(name, int(mtu)); err != nil {
			return err
		}
	}
	if changeFlags {
		if up := want&unix.IFF_UP != 0; up != l.up() {
			return v.st.SetLinkUp(name, up)
		}
	}
	return nil
}

// addrMessage is RTM_NEWADDR's ifaddrmsg and attributes for a.
func addrMessage(a addr) [][]byte {
	family := uint8(unix.AF_INET6)
	if a.v4() {
		family = unix.AF_INET
	}
	ifa := unix.IfAddrmsg{Family: family, Prefixlen: uint8(a.prefix.Bits()), Flags: unix.IFA_F_PERMANENT,
		Scope: a.scope(), Index: uint32(a.link.index)}
	ip := a.prefix.Addr().AsSlice()
	cache := raw(unix.IfaCacheinfo{Prefered: foreverLife, Valid: foreverLife})
	return [][]byte{raw(ifa), attrs(func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.IFA_ADDRESS, ip)
		if a.v4() {
			ae.Bytes(unix.IFA_LOCAL, ip)
			if b, ok := a.broadcast(); ok {
				ae.Bytes(unix.IFA_BROADCAST, b.AsSlice())
			}
			ae.String(unix.IFA_LABEL, a.link.info.Name)
		}
		ae.Uint32(unix.IFA_FLAGS, unix.IFA_F_PERMANENT)
		ae.Bytes(unix.IFA_CACHEINFO, cache)
	})}
}

// changeAddr answers RTM_NEWADDR (ip addr add) and RTM_DELADDR (ip addr
// del).
func (v *View) changeAddr(h nlHeader, body []byte) error {
	var ifa unix.IfAddrmsg
	rest, err := decode(body, &ifa)
	if err != nil {
		return err
	}
	if ifa.Family != unix.AF_INET && ifa.Family != unix.AF_INET6 {
		return refuse(unix.EOPNOTSUPP, "addresses are IPv4 or IPv6") // no handler for the family
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	l, ok := v.linkByIndex(int32(ifa.Index))
	if !ok {
		return refuse(unix.ENODEV, "no such interface")
	}
	local, ok := at[unix.IFA_LOCAL]
	if !ok {
		local, ok = at[unix.IFA_ADDRESS]
	}
	if !ok {
		return refuse(unix.EINVAL, "no address (IFA_LOCAL or IFA_ADDRESS)")
	}
	ip, err := ipAttr(local, ifa.Family)
	if err != nil {
		return err
	}
	if int(ifa.Prefixlen) > ip.BitLen() {
		return refuse(unix.EINVAL, "prefix length too long for the address")
	}
	if peer, ok := at[unix.IFA_ADDRESS]; ok && string(peer) != string(local) && ifa.Family == unix.AF_INET {
		return refuse(unix.EOPNOTSUPP, "the user-level stack has no point-to-point addresses")
	}
	p := netip.PrefixFrom(ip, int(ifa.Prefixlen))
	var existing *addr
	for _, a := range v.addrs(ifa.Family) {
		if a.link.id == l.id && a.prefix.Addr() == ip {
			existing = &a
			break
		}
	}
	if h.typ == unix.RTM_DELADDR {
		if existing == nil || (at[unix.IFA_ADDRESS] != nil && existing.prefix.Bits() != p.Bits()) {
			return refuse(unix.EADDRNOTAVAIL, "no such address on the interface")
		}
		return v.st.RemoveAddress(l.info.Name, existing.prefix)
	}
	if existing != nil {
		if h.flags&unix.NLM_F_EXCL != 0 || h.flags&unix.NLM_F_REPLACE == 0 || existing.prefix != p {
			return refuse(unix.EEXIST, "the interface has this address")
		}
		return nil // replaced by itself
	}
	if h.flags&unix.NLM_F_CREATE == 0 {
		return refuse(unix.ENOENT, "no such address to change (NLM_F_CREATE not set)")
	}
	return v.st.AddAddress(l.info.Name, p)
}

// rt is one route as Linux reports it.
type rt struct {
	family  uint8
	dst     netip.Prefix
	gw      netip.Addr
	index   int32
	table   uint8
	proto   uint8
	scope   uint8
	typ     uint8
	prefsrc netip.Addr
	metric  uint32 // RTA_PRIORITY, if not zero
}

func (r rt) message() [][]byte {
	m := unix.RtMsg{Family: r.family, Dst_len: uint8(r.dst.Bits()), Table: r.table, Protocol: r.proto, Scope: r.scope, Type: r.typ}
	return [][]byte{raw(m), attrs(func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.RTA_TABLE, uint32(r.table))
		if r.dst.Bits() > 0 {
			ae.Bytes(unix.RTA_DST, r.dst.Addr().AsSlice())
		}
		if r.metric != 0 || r.family == unix.AF_INET6 { // IPv6 routes always say theirs
			ae.Uint32(unix.RTA_PRIORITY, r.metric)
		}
		if r.prefsrc.IsValid() {
			ae.Bytes(unix.RTA_PREFSRC, r.prefsrc.AsSlice())
		}
		if r.gw.IsValid() {
			ae.Bytes(unix.RTA_GATEWAY, r.gw.AsSlice())
		}
		ae.Uint32(unix.RTA_OIF, uint32(r.index))
		if r.family == unix.AF_INET6 {
			ae.Uint8(unix.RTA_PREF, 0) // ICMPV6_ROUTER_PREF_MEDIUM
		}
	})}
}

func familyOf(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// routes lists the stack's routes as Linux would hold them: the main
// table from the stack's route table (routes to an address's subnet
// are the kernel's, proto kernel scope link; routes a user added are
// proto boot, as ip route add makes them), and the local table Linux
// keeps for the addresses themselves. IPv4 comes first.
func (v *View) routes(family uint8) []rt {
	links := v.links()
	byNIC := map[tcpip.NICID]link{}
	for _, l := range links {
		byNIC[l.id] = l
	}
	all := v.addrs(unix.AF_UNSPEC)
	// ownAddr finds the address of link l whose subnet is dst.
	ownAddr := func(l link, dst netip.Prefix) (netip.Addr, bool) {
		for _, a := range all {
			if a.link.id == l.id && a.prefix.Masked() == dst {
				return a.prefix.Addr(), true
			}
		}
		return netip.Addr{}, false
	}
	var main, local []rt
	for _, r := range v.ns.GetRouteTable() {
		l, ok := byNIC[r.NIC]
		if !ok {
			continue
		}
		dstIP := netstack.NetipAddr(r.Destination.ID())
		if r.Destination.ID().Len() == 16 {
			dstIP = netip.AddrFrom16(r.Destination.ID().As16()) // keep ::/0 and v4-mapped prefixes IPv6
		}
		dst := netip.PrefixFrom(dstIP, r.Destination.Prefix())
		x := rt{family: familyOf(dstIP), dst: dst, index: l.index, table: unix.RT_TABLE_MAIN, typ: unix.RTN_UNICAST}
		if !r.Gateway.Unspecified() && r.Gateway.Len() > 0 {
			x.gw = netstack.NetipAddr(r.Gateway)
		}
		own, kernel := ownAddr(l, dst)
		switch {
		case l.info.Flags.Loopback && x.family == unix.AF_INET:
			x.table, x.typ, x.proto, x.scope, x.prefsrc = unix.RT_TABLE_LOCAL, unix.RTN_LOCAL, unix.RTPROT_KERNEL, unix.RT_SCOPE_HOST, own
			local = append(local, x)
			continue
		case l.info.Flags.Loopback:
			continue // Linux keeps ::1 in the local table only (below, with the addresses)
		case kernel && !x.gw.IsValid():
			x.proto, x.scope = unix.RTPROT_KERNEL, unix.RT_SCOPE_LINK
			if x.family == unix.AF_INET {
				x.prefsrc = own
			} else {
				x.scope, x.metric = unix.RT_SCOPE_UNIVERSE, metricKernel6
			}
		case x.gw.IsValid():
			x.proto, x.scope = unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE
		default:
			x.proto, x.scope = unix.RTPROT_BOOT, unix.RT_SCOPE_LINK
		}
		if x.family == unix.AF_INET6 && x.metric == 0 {
			x.metric = metricUser6
			x.scope = unix.RT_SCOPE_UNIVERSE
		}
		main = append(main, x)
	}
	for _, a := range all {
		ip := a.prefix.Addr()
		x := rt{family: familyOf(ip), dst: netip.PrefixFrom(ip, ip.BitLen()), index: a.link.index, table: unix.RT_TABLE_LOCAL,
			typ: unix.RTN_LOCAL, proto: unix.RTPROT_KERNEL, scope: unix.RT_SCOPE_HOST}
		if x.family == unix.AF_INET {
			x.prefsrc = ip
			local = append(local, x)
			brd, ok := a.broadcast()
			if a.link.info.Flags.Loopback && a.prefix.Bits() <= 30 {
				brd, ok = broadcastOf(a.prefix), true // lo has its subnet's broadcast route, not the address
			}
			if ok {
				local = append(local, rt{family: unix.AF_INET, dst: netip.PrefixFrom(brd, 32), index: a.link.index, table: unix.RT_TABLE_LOCAL,
					typ: unix.RTN_BROADCAST, proto: unix.RTPROT_KERNEL, scope: unix.RT_SCOPE_LINK, prefsrc: ip})
			}
		} else {
			x.scope = unix.RT_SCOPE_UNIVERSE
			local = append(local, x)
		}
	}
	// Linux routes IPv6 multicast through every interface that is up
	// other than the loopback.
	for _, l := range links {
		if l.up() && !l.info.Flags.Loopback {
			local = append(local, rt{family: unix.AF_INET6, dst: netip.MustParsePrefix("ff00::/8"), index: l.index,
				table: unix.RT_TABLE_LOCAL, typ: unix.RTN_MULTICAST, proto: unix.RTPROT_KERNEL, metric: metricKernel6})
		}
	}
	sortRoutes(main)
	sortRoutes(local)
	var out []rt
	for _, f := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if family != unix.AF_UNSPEC && family != f {
			continue
		}
		for _, list := range [][]rt{main, local} {
			for _, r := range list {
				if r.family == f {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// sortRoutes orders routes as Linux's tables list them: by destination,
// with IPv6's default route last.
func sortRoutes(rs []rt) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.family == unix.AF_INET6 && (a.dst.Bits() == 0) != (b.dst.Bits() == 0) {
			return b.dst.Bits() == 0
		}
		if c := a.dst.Addr().Compare(b.dst.Addr()); c != 0 {
			return c < 0
		}
		return a.dst.Bits() < b.dst.Bits()
	})
}

// getRoute answers RTM_GETROUTE for one destination: ip route get.
func (v *View) getRoute(h nlHeader, body []byte, d *dump) error {
	var m unix.RtMsg
	rest, err := decode(body, &m)
	if err != nil {
		return err
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	b, ok := at[unix.RTA_DST]
	if !ok {
		return refuse(unix.EINVAL, "no destination (RTA_DST)")
	}
	dst, err := ipAttr(b, m.Family)
	if err != nil {
		return err
	}
	proto := header.IPv4ProtocolNumber
	if dst.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	var nic tcpip.NICID
	if oif, ok := attrUint32(at[unix.RTA_OIF]); ok && oif != 0 {
		l, ok := v.linkByIndex(int32(oif))
		if !ok {
			return refuse(unix.ENODEV, "no such interface")
		}
		nic = l.id
	}
	r, terr := v.ns.FindRoute(nic, tcpip.Address{}, netstack.Address(dst), proto, false)
	if terr != nil {
		return refuse(unix.ENETUNREACH, "no route to the destination")
	}
	defer r.Release()
	x := rt{family: m.Family, dst: netip.PrefixFrom(dst, dst.BitLen()), index: v.indexOfNIC(r.NICID()), table: unix.RT_TABLE_MAIN,
		typ: unix.RTN_UNICAST, prefsrc: netstack.NetipAddr(r.LocalAddress())}
	if hop := r.NextHop(); hop.Len() > 0 && hop != netstack.Address(dst) {
		x.gw = netstack.NetipAddr(hop)
	}
	if r.LocalAddress() == netstack.Address(dst) {
		x.typ, x.table = unix.RTN_LOCAL, unix.RT_TABLE_LOCAL
		if lo, ok := v.linkByIndex(1); ok && lo.info.Flags.Loopback {
			x.index = 1
		}
	}
	if x.family == unix.AF_INET6 && x.typ == unix.RTN_UNICAST {
		// Linux answers for IPv6 with the stored route that matched: its
		// protocol and metric.
		best := -1
		for _, r := range v.routes(unix.AF_INET6) {
			if r.table == unix.RT_TABLE_MAIN && r.index == x.index && r.dst.Contains(dst) && r.dst.Bits() > best {
				best, x.proto, x.metric = r.dst.Bits(), r.proto, r.metric
			}
		}
	}
	msg := x.message()
	binary.NativeEndian.PutUint32(msg[0][8:], unix.RTM_F_CLONED) // rtm_flags: a route looked up, not stored
	msg = append(msg, attrs(func(ae *netlink.AttributeEncoder) { ae.Uint32(unix.RTA_UID, v.uid) }))
	d.a.alone(message(unix.RTM_NEWROUTE, 0, h.seq, d.pid, msg...))
	return nil
}

// changeRoute answers RTM_NEWROUTE (ip route add, replace, change) and
// RTM_DELROUTE (ip route del) in the main table.
func (v *View) changeRoute(h nlHeader, body []byte) error {
	var m unix.RtMsg
	rest, err := decode(body, &m)
	if err != nil {
		return err
	}
	if m.Family != unix.AF_INET && m.Family != unix.AF_INET6 {
		return refuse(unix.EOPNOTSUPP, "routes are IPv4 or IPv6") // no handler for the family
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	table := uint32(m.Table)
	if t, ok := attrUint32(at[unix.RTA_TABLE]); ok {
		table = t
	}
	if table != unix.RT_TABLE_MAIN && table != unix.RT_TABLE_UNSPEC {
		return refuse(unix.EOPNOTSUPP, "the user-level stack has one routing table, main")
	}
	if h.typ == unix.RTM_NEWROUTE && m.Type != unix.RTN_UNICAST {
		return refuse(unix.EOPNOTSUPP, "the user-level stack has unicast routes only")
	}
	for _, t := range []uint16{unix.RTA_MULTIPATH, unix.RTA_METRICS, unix.RTA_SRC, unix.RTA_IIF, unix.RTA_ENCAP, rtaNHID} {
		if _, ok := at[t]; ok && h.typ == unix.RTM_NEWROUTE {
			return refuse(unix.EOPNOTSUPP, "the user-level stack cannot hold this kind of route")
		}
	}
	bits := int(m.Dst_len)
	dstIP := netip.IPv4Unspecified()
	if m.Family == unix.AF_INET6 {
		dstIP = netip.IPv6Unspecified()
	}
	if b, ok := at[unix.RTA_DST]; ok {
		if dstIP, err = ipAttr(b, m.Family); err != nil {
			return err
		}
	}
	if bits > dstIP.BitLen() {
		return refuse(unix.EINVAL, "prefix length too long for the destination")
	}
	dst := netip.PrefixFrom(dstIP, bits)
	if dst != dst.Masked() && h.typ == unix.RTM_NEWROUTE {
		return refuse(unix.EINVAL, "invalid prefix for given prefix length")
	}
	var via netip.Addr
	if b, ok := at[unix.RTA_GATEWAY]; ok {
		if via, err = ipAttr(b, m.Family); err != nil {
			return err
		}
	}
	var dev string
	if oif, ok := attrUint32(at[unix.RTA_OIF]); ok {
		l, ok := v.linkByIndex(int32(oif))
		if !ok {
			return refuse(unix.ENODEV, "no such interface")
		}
		dev = l.info.Name
	}
	if b, ok := at[unix.RTA_PREFSRC]; ok && h.typ == unix.RTM_NEWROUTE {
		src, err := ipAttr(b, m.Family)
		if err != nil {
			return err
		}
		if !v.isOwn(src) {
			return refuse(unix.EINVAL, "invalid prefsrc address")
		}
	}
	if h.typ == unix.RTM_DELROUTE {
		return v.st.RemoveRoute(dst, via, dev)
	}
	exists := v.routeExists(dst)
	switch {
	case exists && h.flags&unix.NLM_F_REPLACE != 0:
		if err := v.st.RemoveRoute(dst, netip.Addr{}, ""); err != nil {
			return err
		}
	case !exists && h.flags&unix.NLM_F_CREATE == 0:
		return refuse(unix.ENOENT, "no such route to change (NLM_F_CREATE not set)")
	}
	return v.st.AddRoute(dst, via, dev)
}

// isOwn reports whether ip is an address of the stack.
func (v *View) isOwn(ip netip.Addr) bool {
	for _, a := range v.addrs(unix.AF_UNSPEC) {
		if a.prefix.Addr() == ip {
			return true
		}
	}
	return false
}

// routeExists reports whether the stack has a route to dst.
func (v *View) routeExists(dst netip.Prefix) bool {
	for _, r := range v.ns.GetRouteTable() {
		if r.Destination.Prefix() == dst.Bits() && netstack.NetipAddr(r.Destination.ID()) == dst.Addr().Unmap() &&
			(r.Destination.ID().Len() == 4) == dst.Addr().Is4() {
			return true
		}
	}
	return false
}

// neigh is one neighbour entry.
type neigh struct {
	link  link
	entry stack.NeighborEntry
}

// nudState maps netstack's neighbour states to Linux's NUD_*.
var nudState = map[stack.NeighborState]uint16{
	stack.Incomplete:  unix.NUD_INCOMPLETE,
	stack.Reachable:   unix.NUD_REACHABLE,
	stack.Stale:       unix.NUD_STALE,
	stack.Delay:       unix.NUD_DELAY,
	stack.Probe:       unix.NUD_PROBE,
	stack.Static:      unix.NUD_PERMANENT,
	stack.Unreachable: unix.NUD_FAILED,
}

func (n neigh) message() [][]byte {
	ip := netstack.NetipAddr(n.entry.Addr)
	nd := unix.NdMsg{Family: familyOf(ip), Ifindex: n.link.index, State: nudState[n.entry.State], Type: unix.RTN_UNICAST}
	return [][]byte{raw(nd), attrs(func(ae *netlink.AttributeEncoder) {
		ae.Bytes(unix.NDA_DST, ip.AsSlice())
		if len(n.entry.LinkAddr) > 0 {
			ae.Bytes(unix.NDA_LLADDR, []byte(n.entry.LinkAddr))
		}
		ae.Uint32(unix.NDA_PROBES, 0)
	})}
}

// neighbours lists the neighbour tables of the family's protocols, IPv4
// (ARP) first, each by interface.
func (v *View) neighbours(family uint8) []neigh {
	var out []neigh
	for _, f := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if family != unix.AF_UNSPEC && family != f {
			continue
		}
		proto := header.IPv4ProtocolNumber
		if f == unix.AF_INET6 {
			proto = header.IPv6ProtocolNumber
		}
		for _, l := range v.links() {
			if l.info.Flags.Loopback {
				continue
			}
			entries, terr := v.ns.Neighbors(l.id, proto)
			if terr != nil {
				continue // a link without address resolution
			}
			sort.Slice(entries, func(i, j int) bool {
				return netstack.NetipAddr(entries[i].Addr).Less(netstack.NetipAddr(entries[j].Addr))
			})
			for _, e := range entries {
				out = append(out, neigh{link: l, entry: e})
			}
		}
	}
	return out
}

// changeNeighbour answers RTM_NEWNEIGH (ip neigh add ... lladdr ...: a
// permanent entry) and RTM_DELNEIGH.
func (v *View) changeNeighbour(h nlHeader, body []byte) error {
	var nd unix.NdMsg
	rest, err := decode(body, &nd)
	if err != nil {
		return err
	}
	if nd.Family != unix.AF_INET && nd.Family != unix.AF_INET6 {
		return refuse(unix.EAFNOSUPPORT, "neighbours are IPv4 or IPv6")
	}
	at, err := parseAttrs(rest)
	if err != nil {
		return err
	}
	l, ok := v.linkByIndex(nd.Ifindex)
	if !ok {
		return refuse(unix.ENODEV, "no such interface")
	}
	b, ok := at[unix.NDA_DST]
	if !ok {
		return refuse(unix.EINVAL, "no neighbour address (NDA_DST)")
	}
	ip, err := ipAttr(b, nd.Family)
	if err != nil {
		return refuse(unix.EINVAL, "neighbour address of the wrong length for its family")
	}
	proto := header.IPv4ProtocolNumber
	if nd.Family == unix.AF_INET6 {
		proto = header.IPv6ProtocolNumber
	}
	if h.typ == unix.RTM_DELNEIGH {
		if terr := v.ns.RemoveNeighbor(l.id, proto, netstack.Address(ip)); terr != nil {
			return refuse(unix.ENOENT, "no such neighbour")
		}
		return nil
	}
	lladdr, ok := at[unix.NDA_LLADDR]
	if !ok || len(lladdr) != len(l.info.LinkAddress) {
		return refuse(unix.EINVAL, "no link-layer address of the interface's length (NDA_LLADDR)")
	}
	if terr := v.ns.AddStaticNeighbor(l.id, proto, netstack.Address(ip), tcpip.LinkAddress(lladdr)); terr != nil {
		return refuse(unix.EOPNOTSUPP, fmt.Sprintf("the interface keeps no neighbours: %s", terr))
	}
	return nil
}
