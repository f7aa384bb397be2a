package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/ustack/ustack"
	"github.com/ustack/ustack/control/api"
)

// PingOptions are ping(8)'s -c, -i, -W and -s.
type PingOptions struct {
	Count    int           // requests; 0: until ctx ends
	Interval time.Duration // between requests
	Timeout  time.Duration // how long to wait for replies after the last request
	Size     int           // payload bytes
}

// DefaultPingOptions are ping(8)'s: until stopped, one request a second,
// 56 bytes of payload.
func DefaultPingOptions() PingOptions {
	return PingOptions{Interval: time.Second, Timeout: 10 * time.Second, Size: 56}
}

// MaxPingSize keeps an echo request within one IPv4 packet.
const MaxPingSize = 65507

// check refuses options Ping cannot use; the message names the option.
func (o PingOptions) check() error {
	switch {
	case o.Count < 0 || o.Count > math.MaxInt32:
		return fmt.Errorf("count: %d is not a number of requests from 0 to %d", o.Count, math.MaxInt32)
	case o.Interval < time.Millisecond:
		return fmt.Errorf("interval: %v is shorter than 1ms", o.Interval)
	case o.Timeout < time.Millisecond:
		return fmt.Errorf("timeout: %v is shorter than 1ms", o.Timeout)
	case o.Size < 0 || o.Size > MaxPingSize:
		return fmt.Errorf("size: %d is not a payload size from 0 to %d", o.Size, MaxPingSize)
	}
	return nil
}

// PingStats counts what a ping sent and received.
type PingStats struct {
	Transmitted, Received, Duplicates int
	RTTs                              []time.Duration
}

// Ping sends echo requests from st to dst (host is what it was called on
// the command line) and writes what comes back to out the way ping(8)
// prints it. The end of ctx ends it early, still with the summary.
func Ping(ctx context.Context, st *ustack.Stack, host string, dst netip.Addr, o PingOptions, out io.Writer) (PingStats, error) {
	var stats PingStats
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
	fmt.Fprintf(out, "PING %s (%s) %d(%d) bytes of data.\n", host, dst, o.Size, o.Size+8+hdr)

	payload := make([]byte, o.Size)
	for i := range payload {
		payload[i] = byte(i)
	}
	sent := map[int]time.Time{}
	seen := map[int]bool{}
	start := time.Now()
	var lastSend time.Time
	nextSend := start
	buf := make([]byte, MaxPingSize+64)
	peer := &net.IPAddr{IP: dst.AsSlice()}
	for ctx.Err() == nil {
		now := time.Now()
		done := o.Count > 0 && stats.Transmitted >= o.Count
		if done && (stats.Received >= stats.Transmitted || now.After(lastSend.Add(o.Timeout))) {
			break
		}
		if !done && !now.Before(nextSend) {
			seq := stats.Transmitted + 1
			msg := icmp.Message{Type: reqType, Body: &icmp.Echo{Seq: seq & 0xffff, Data: payload}}
			b, err := msg.Marshal(nil)
			if err != nil {
				return stats, fmt.Errorf("ping: building the request: %w", err)
			}
			if _, err := conn.WriteTo(b, peer); err != nil {
				fmt.Fprintf(out, "ping: sending icmp_seq=%d: %v\n", seq, err)
			}
			sent[seq&0xffff] = time.Now()
			stats.Transmitted++
			lastSend = time.Now()
			nextSend = nextSend.Add(o.Interval)
			continue
		}
		wake := nextSend
		if o.Count > 0 && stats.Transmitted >= o.Count {
			wake = lastSend.Add(o.Timeout)
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
			stats.Duplicates++
			dup = " (DUP!)"
		} else {
			seen[seq] = true
			stats.Received++
			stats.RTTs = append(stats.RTTs, rtt)
		}
		fmt.Fprintf(out, "%d bytes from %s: icmp_seq=%d time=%s ms%s\n", n, ipOf(from), seq, fmtMillis(rtt), dup)
	}
	elapsed := lastSend.Sub(start)
	if stats.Transmitted == 0 {
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

// ResolveHost takes an address, or a name resolved through the stack's DNS.
func ResolveHost(ctx context.Context, st *ustack.Stack, host string) (netip.Addr, error) {
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

func printPingSummary(out io.Writer, host string, s PingStats, elapsed time.Duration) {
	loss := 0.0
	if s.Transmitted > 0 {
		loss = 100 * float64(s.Transmitted-s.Received) / float64(s.Transmitted)
	}
	fmt.Fprintf(out, "\n--- %s ping statistics ---\n", host)
	dups := ""
	if s.Duplicates > 0 {
		dups = fmt.Sprintf(", +%d duplicates", s.Duplicates)
	}
	fmt.Fprintf(out, "%d packets transmitted, %d received%s, %s%% packet loss, time %dms\n",
		s.Transmitted, s.Received, dups, strconv.FormatFloat(loss, 'g', 4, 64), elapsed.Milliseconds())
	if len(s.RTTs) == 0 {
		return
	}
	lo, hi, sum, sumSq := math.Inf(1), 0.0, 0.0, 0.0
	for _, d := range s.RTTs {
		ms := float64(d) / float64(time.Millisecond)
		lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		sum += ms
		sumSq += ms * ms
	}
	n := float64(len(s.RTTs))
	avg := sum / n
	mdev := math.Sqrt(math.Max(0, sumSq/n-avg*avg))
	fmt.Fprintf(out, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", lo, avg, hi, mdev)
}

// servePing is GET /v1/ping: it pings from the stack and streams ping's
// lines, then the number of replies in a trailer.
func (s *Stack) servePing(w http.ResponseWriter, r *http.Request) {
	d := DefaultPingOptions()
	req := api.PingRequest{Count: d.Count, Interval: d.Interval, Timeout: d.Timeout, Size: d.Size}
	if err := req.SetQuery(r.URL.Query()); err != nil {
		http.Error(w, "ping: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Host == "" {
		http.Error(w, "ping: missing host (use /v1/ping?host=H)", http.StatusBadRequest)
		return
	}
	o := PingOptions{Count: req.Count, Interval: req.Interval, Timeout: req.Timeout, Size: req.Size}
	if err := o.check(); err != nil {
		http.Error(w, "ping: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Resolved before the answer starts, so that a bad host is an error
	// status the client reports, not a line in the output.
	dst, err := ResolveHost(r.Context(), s.st, req.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", api.PingReceivedTrailer)
	w.WriteHeader(http.StatusOK)
	stats, err := Ping(r.Context(), s.st, req.Host, dst, o, &flushWriter{w: w})
	if err != nil {
		fmt.Fprintf(w, "ustack: %v\n", err)
	}
	w.Header().Set(api.PingReceivedTrailer, strconv.Itoa(stats.Received))
}

// flushWriter sends each line as soon as it is written.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
