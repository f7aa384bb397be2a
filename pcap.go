package ustack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/ustack/ustack/link"
)

// Pcap attaches the stack to a packet file instead of a wire: the frames
// of the capture In arrive as if received, paced by their timestamps, and
// what the stack sends is recorded in Out. The stack has its own MAC and
// the addresses of Config.Addrs (required; give it the address of the
// capture's responder so it answers in its place). When the capture ends
// the stack stays up and says so through Config.Logf.
type Pcap struct {
	// In is the capture replayed: pcap (not pcapng), link type Ethernet,
	// Linux cooked (tcpdump -i any) or raw IP.
	In string
	// Out, if set, is created and receives every frame the stack sends.
	Out string
	// Speed scales the capture's clock: 1 is real time, N > 1 N times
	// faster, 0 as fast as possible.
	Speed float64
	// KeepMAC leaves the captured unicast destination MACs alone; by
	// default they are rewritten to the stack's own, since the capture was
	// addressed to another machine.
	KeepMAC bool
}

func (p Pcap) String() string {
	s := "pcap:" + p.In
	if p.Out != "" {
		s += ",out=" + p.Out
	}
	switch p.Speed {
	case 1:
	case 0:
		s += ",speed=max"
	default:
		s += ",speed=" + strconv.FormatFloat(p.Speed, 'g', -1, 64)
	}
	if p.KeepMAC {
		s += ",mac=keep"
	}
	return s
}

func (p Pcap) attach(cfg Config) (*Stack, error) { return newPcap(cfg, p) }

func newPcap(cfg Config, att Pcap) (*Stack, error) {
	if att.In == "" {
		return nil, configErr("Net", "pcap: no capture file (e.g. pcap:in.pcap)")
	}
	if len(cfg.Addrs) == 0 {
		return nil, configErr("Addrs", "--net pcap needs the stack's own address, the one the capture's packets are sent to (e.g. --ip 10.9.0.2/24)")
	}
	if cfg.BusyPoll > 0 {
		return nil, configErr("BusyPoll", "applies to the tap and host attachments only: pcap reads a file (leave --busy-poll out)")
	}
	if att.Speed < 0 {
		return nil, configErr("Net", "pcap: speed %v is negative (use realtime, max or a factor such as 10)", att.Speed)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	opts := link.ReplayOptions{Speed: att.Speed, KeepMAC: att.KeepMAC, Logf: cfg.Logf}
	if att.Out != "" {
		f, err := os.Create(att.Out)
		if err != nil {
			return nil, configErr("Net", "pcap: out=%s: %v (choose a writable path)", att.Out, err)
		}
		w, err := link.NewPcapWriter(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		opts.Out = w
	}
	ep, err := link.OpenReplay(att.In, cfg.MTU, randomMAC(), opts)
	if err != nil {
		if opts.Out != nil {
			opts.Out.Close()
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, configErr("Net", "pcap:%s: no such file (name an existing capture, e.g. one written by tcpdump -w)", att.In)
		}
		return nil, &ConfigError{Field: "Net", Err: fmt.Errorf("pcap:%w", err)}
	}
	s, err := newStack(cfg, ep, ethernetFraming)
	if err != nil {
		ep.Close()
		return nil, err
	}
	s.net = att
	ep.Start() // the stack has its addresses now
	return s, nil
}
