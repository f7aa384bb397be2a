package drill

import (
	"fmt"
	"strconv"
	"strings"
)

// Script is a parsed packetdrill script.
type Script struct {
	Path    string
	Options []Option // --name[=value] lines before the first event
	Init    *Command // a command before the first event
	Events  []*Event
	Cleanup *Command // a command after the last event, run whatever happens

	// KnownDifferences are the reasons given in "// ustack: known
	// difference: REASON" comments: the script states the kernel's
	// behaviour, and ustack's differs for that reason.
	KnownDifferences []string
	// KernelOnly is set by "// drill: kernel only: REASON" for a script
	// that makes no sense on ustack at all.
	KernelOnly string
}

// Option is one "--name=value" of a script header.
type Option struct {
	Line     int
	Name     string
	Value    string
	HasValue bool
}

// TimeKind says how an event's time is written.
type TimeKind int

const (
	AbsoluteTime      TimeKind = iota // 0.100
	RelativeTime                      // +0.100
	AnyTime                           // *
	AbsoluteRangeTime                 // 0.1~0.2
	RelativeRangeTime                 // +0.1~+0.2
)

// Event is one line of a script: a time and what happens then.
type Event struct {
	Line     int
	Time     TimeKind
	Usecs    int64 // the time, or the start of a range
	EndUsecs int64 // the end of a range

	Packet  *Packet
	Syscall *Syscall
	Command *Command
	Code    *Code
}

// Command is a shell command in backquotes.
type Command struct {
	Line int
	Text string
}

// Code is a %{ ... }% block.
type Code struct {
	Line int
	Text string
}

// Syscall is a system call with its expected result.
type Syscall struct {
	Name     string
	Args     []*Expr
	Result   *Expr
	Errno    string // expected errno name, "" if none
	Note     string // the text in parentheses after the errno, ignored
	Blocking bool   // written with "...END"
	EndUsecs int64  // END, as written (relative events make it relative)
}

// Direction of a packet.
type Direction byte

const (
	Inbound  Direction = '<'
	Outbound Direction = '>'
)

// Protocol of a packet line.
type Protocol int

const (
	TCP Protocol = iota
	UDP
	ICMP
)

// TOSCheck says what of the IP TOS/traffic class byte a packet specifies.
type TOSCheck int

const (
	TOSNone  TOSCheck = iota
	TOSECN            // noecn, ect0, ect1, ce: the two ECN bits
	TOSECT01          // ect01: ECT(0) or ECT(1), outbound only
	TOSValue          // tos 0xNN: the whole byte
)

// Packet is a packet line.
type Packet struct {
	Dir Direction

	// An explicit IP header ("ipv4 A > B:"), else the configured
	// addresses.
	IPVersion int // 0 when not given
	Src, Dst  string

	TOS       TOSCheck
	TOSValue  uint8
	FlowLabel uint32
	TTL       uint8 // 0: unchecked / default

	Proto            Protocol
	SrcPort, DstPort uint16 // 0: the connection's own

	// TCP
	Flags      string // letters of F S R P . E W U A, "" for none ('-')
	Seq        uint32
	PayloadLen int
	Ack        uint32
	Win        int // -1 when not given
	Urg        uint16
	Options    []TCPOption
	AnyOptions bool // <...>: options not checked

	// UDP: PayloadLen.

	// ICMP
	ICMPType, ICMPCode string
	MTU                int // -1 when not given
	EchoID             int
	EchoedProto        Protocol // what the ICMP error quotes
	EchoedRaw          bool
	EchoedSeq          uint32
	EchoedLen          int
}

// TCP option kinds.
const (
	OptEOL       = 0
	OptNOP       = 1
	OptMSS       = 2
	OptWScale    = 3
	OptSACKOK    = 4
	OptSACK      = 5
	OptTimestamp = 8
	OptMD5       = 19
	OptFastOpen  = 34
	OptExp       = 254
)

// TCPOption is one TCP option of a packet line.
type TCPOption struct {
	Kind   byte
	MSS    uint16
	WScale uint8
	SACK   [][2]uint32
	TSVal  uint32
	TSEcr  uint32
	Data   []byte // FO / FOEXP cookie, md5 digest
}

// ExprKind is the kind of a system call argument or result.
type ExprKind int

const (
	ExprEllipsis ExprKind = iota
	ExprInt
	ExprWord
	ExprString
	ExprBinary // Op is "|" or "="
	ExprList   // [a, b]
	ExprStruct // { ... }: Tag names the form, Fields its members
	ExprInAddr
	ExprIn6Addr
)

// Expr is a system call argument or result.
type Expr struct {
	Kind     ExprKind
	Int      int64
	Hex      bool
	Str      string // a word's name, a string, an address
	Ellipsis bool   // "string"...
	Op       string
	L, R     *Expr
	List     []*Expr
	Tag      string // sockaddr, msghdr, iovec, pollfd, linger, epollev, cmsg, list
	Fields   map[string]*Expr
	Order    []string // field names as written
}

func (e *Expr) String() string {
	if e == nil {
		return "<nil>"
	}
	switch e.Kind {
	case ExprEllipsis:
		return "..."
	case ExprInt:
		if e.Hex {
			return fmt.Sprintf("%#x", e.Int)
		}
		return strconv.FormatInt(e.Int, 10)
	case ExprWord:
		return e.Str
	case ExprString:
		s := strconv.Quote(e.Str)
		if e.Ellipsis {
			s += "..."
		}
		return s
	case ExprBinary:
		return e.L.String() + e.Op + e.R.String()
	case ExprList:
		var parts []string
		for _, x := range e.List {
			parts = append(parts, x.String())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case ExprStruct:
		var parts []string
		if e.Tag == "list" {
			for _, x := range e.List {
				parts = append(parts, x.String())
			}
		} else {
			for _, k := range e.Order {
				parts = append(parts, k+"="+e.Fields[k].String())
			}
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case ExprInAddr:
		return fmt.Sprintf("inet_addr(%q)", e.Str)
	case ExprIn6Addr:
		return fmt.Sprintf("inet6_addr(%q)", e.Str)
	}
	return "?"
}

// String writes the call as a script line would (without its time).
func (s *Syscall) String() string {
	var args []string
	for _, a := range s.Args {
		args = append(args, a.String())
	}
	return fmt.Sprintf("%s(%s)", s.Name, strings.Join(args, ", "))
}
