package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ustack/ustack"
)

// pingOptions are ping(8)'s -c, -i, -W and -s.
type pingOptions struct {
	count    int           // 0: until interrupted
	interval time.Duration // between requests
	timeout  time.Duration // how long to wait for replies after the last request
	size     int           // payload bytes
}

func defaultPingOptions() pingOptions {
	return pingOptions{interval: time.Second, timeout: 10 * time.Second, size: 56}
}

// maxPingSize keeps an echo request within one IPv4 packet.
const maxPingSize = 65507

func (o *pingOptions) register(s *optionSet) {
	s.add(&option{names: []string{"c", "count"}, arg: "N", value: intValue{p: &o.count, min: 0, max: math.MaxInt32, what: "a number of requests"},
		help: "stop after N requests (default: until interrupted)"})
	s.add(&option{names: []string{"i", "interval"}, arg: "INTERVAL", value: durationValue{p: &o.interval, min: time.Millisecond},
		help: "time between requests, seconds or a duration like 200ms (default: 1s)"})
	s.add(&option{names: []string{"W", "timeout"}, arg: "TIMEOUT", value: durationValue{p: &o.timeout, min: time.Millisecond},
		help: "how long to wait for replies after the last request (default: 10s)"})
	s.add(&option{names: []string{"s", "size"}, arg: "SIZE", value: intValue{p: &o.size, min: 0, max: maxPingSize, what: "a payload size in bytes"},
		help: "payload bytes per request (default: 56, making 64-byte ICMP messages)"})
}

func pingCommand() *command {
	c := &command{name: "ping", args: "HOST", summary: "send ICMP echo requests over the user-level stack"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		po := defaultPingOptions()
		var stackName string
		po.register(s)
		s.add(stackOption(&stackName))
		sf.register(s)
		sf.registerVerbose(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args, "HOST"); err != nil {
				return err
			}
			if stackName != "" {
				if err := refuseStackFlags(s); err != nil {
					return err
				}
				return pingViaDaemon(ctx, stackName, args[0], po, e)
			}
			st, err := sf.newStack(logTo(e, "ustack"))
			if err != nil {
				return err
			}
			defer closeStack(st, e)
			dst, err := resolveHost(ctx, st, args[0])
			if err != nil {
				return err
			}
			stats, err := ping(ctx, st, args[0], dst, po, e.stdout)
			if err != nil {
				return err
			}
			if stats.received == 0 {
				return &exitError{code: 1}
			}
			return nil
		}
	}
	return c
}

type pingStats struct {
	transmitted, received, duplicates int
	rtts                              []time.Duration
}

// ping sends echo requests to dst (named host on the command line) and
// prints what comes back the way ping(8) does. Interrupting ctx ends it
// early, still with the summary.
func ping(ctx context.Context, st *ustack.Stack, host string, dst netip.Addr, o pingOptions, out io.Writer) (pingStats, error) {
	var stats pingStats
	network, proto, reqType := "icmp", 1, icmp.Type(ipv4.ICMPTypeEcho)
	if dst.Is6() {
		network, proto, reqType = "icmp6", 58, ipv6.ICMPTypeEchoRequest
	}
	conn, err := st.ListenPacket(network, "")
	if err != nil {
		return stats, fmt.Errorf("ping: opening an ICMP socket on the stack: %w", err)
	}
	defer conn.Close()
	// Interruption wakes a blocked read; the loop below then sees ctx done.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	hdr := 20
	if dst.Is6() {
		hdr = 40
	}
	fmt.Fprintf(out, "PING %s (%s) %d(%d) bytes of data.\n", host, dst, o.size, o.size+8+hdr)

	payload := make([]byte, o.size)
	for i := range payload {
		payload[i] = byte(i)
	}
	sent := map[int]time.Time{}
	seen := map[int]bool{}
	start := time.Now()
	var lastSend time.Time
	nextSend := start
	buf := make([]byte, maxPingSize+64)
	peer := &net.IPAddr{IP: dst.AsSlice()}
	for ctx.Err() == nil {
		now := time.Now()
		done := o.count > 0 && stats.transmitted >= o.count
		if done && (stats.received >= stats.transmitted || now.After(lastSend.Add(o.timeout))) {
			break
		}
		if !done && !now.Before(nextSend) {
			seq := stats.transmitted + 1
			msg := icmp.Message{Type: reqType, Body: &icmp.Echo{Seq: seq & 0xffff, Data: payload}}
			b, err := msg.Marshal(nil)
			if err != nil {
				return stats, fmt.Errorf("ping: building the request: %w", err)
			}
			if _, err := conn.WriteTo(b, peer); err != nil {
				fmt.Fprintf(out, "ping: sending icmp_seq=%d: %v\n", seq, err)
			}
			sent[seq&0xffff] = time.Now()
			stats.transmitted++
			lastSend = time.Now()
			nextSend = nextSend.Add(o.interval)
			continue
		}
		wake := nextSend
		if o.count > 0 && stats.transmitted >= o.count {
			wake = lastSend.Add(o.timeout)
		}
		conn.SetReadDeadline(wake)
		if ctx.Err() != nil {
			break
		}
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return stats, fmt.Errorf("ping: reading replies: %w", err)
		}
		rtt, seq, ok := matchReply(buf[:n], proto, sent)
		if !ok {
			continue
		}
		dup := ""
		if seen[seq] {
			stats.duplicates++
			dup = " (DUP!)"
		} else {
			seen[seq] = true
			stats.received++
			stats.rtts = append(stats.rtts, rtt)
		}
		fmt.Fprintf(out, "%d bytes from %s: icmp_seq=%d time=%s ms%s\n", n, ipOf(from), seq, fmtMillis(rtt), dup)
	}
	elapsed := lastSend.Sub(start)
	if stats.transmitted == 0 {
		elapsed = 0
	}
	printPingSummary(out, host, stats, elapsed)
	return stats, nil
}

func ipOf(a net.Addr) string {
	if ia, ok := a.(*net.IPAddr); ok {
		return ia.IP.String()
	}
	return a.String()
}

// matchReply parses an echo reply and finds the request it answers.
func matchReply(b []byte, proto int, sent map[int]time.Time) (time.Duration, int, bool) {
	m, err := icmp.ParseMessage(proto, b)
	if err != nil || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
		return 0, 0, false
	}
	echo, ok := m.Body.(*icmp.Echo)
	if !ok {
		return 0, 0, false
	}
	t, ok := sent[echo.Seq]
	if !ok {
		return 0, 0, false
	}
	return time.Since(t), echo.Seq, true
}

// resolveHost takes an address, or a name resolved through the stack's DNS.
func resolveHost(ctx context.Context, st *ustack.Stack, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := st.Resolver().LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ping: %s: %w", host, err)
	}
	for _, a := range addrs { // IPv4 first, as ping(8) does
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return addrs[0], nil
}

// fmtMillis prints an RTT with ping(8)'s precision.
func fmtMillis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms, 'f', 3, 64)
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64)
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64)
	}
	return strconv.FormatFloat(ms, 'f', 0, 64)
}

func printPingSummary(out io.Writer, host string, s pingStats, elapsed time.Duration) {
	loss := 0.0
	if s.transmitted > 0 {
		loss = 100 * float64(s.transmitted-s.received) / float64(s.transmitted)
	}
	fmt.Fprintf(out, "\n--- %s ping statistics ---\n", host)
	dups := ""
	if s.duplicates > 0 {
		dups = fmt.Sprintf(", +%d duplicates", s.duplicates)
	}
	fmt.Fprintf(out, "%d packets transmitted, %d received%s, %s%% packet loss, time %dms\n",
		s.transmitted, s.received, dups, strconv.FormatFloat(loss, 'g', 4, 64), elapsed.Milliseconds())
	if len(s.rtts) == 0 {
		return
	}
	lo, hi, sum, sumSq := math.Inf(1), 0.0, 0.0, 0.0
	for _, d := range s.rtts {
		ms := float64(d) / float64(time.Millisecond)
		lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		sum += ms
		sumSq += ms * ms
	}
	n := float64(len(s.rtts))
	avg := sum / n
	mdev := math.Sqrt(math.Max(0, sumSq/n-avg*avg))
	fmt.Fprintf(out, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", lo, avg, hi, mdev)
}

// pingViaDaemon has the daemon run the ping and copies its output; the
// daemon reports the number of replies in a trailer.
func pingViaDaemon(ctx context.Context, name, host string, o pingOptions, e *env) error {
	sock, err := daemonSocket(name)
	if err != nil {
		return err
	}
	q := url.Values{}
	q.Set("host", host)
	q.Set("count", strconv.Itoa(o.count))
	q.Set("interval", o.interval.String())
	q.Set("timeout", o.timeout.String())
	q.Set("size", strconv.Itoa(o.size))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ustack/v1/ping?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := daemonHTTPClient(sock).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s", bytesTrim(msg))
	}
	if _, err := io.Copy(e.stdout, resp.Body); err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 1}
		}
		return fmt.Errorf("ping: reading from the daemon: %w", err)
	}
	if n, _ := strconv.Atoi(resp.Trailer.Get(pingReceivedTrailer)); n == 0 {
		return &exitError{code: 1}
	}
	return nil
}

const pingReceivedTrailer = "Ustack-Ping-Received"

func bytesTrim(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}
