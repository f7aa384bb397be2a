package programs_test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestLinkRate: iperf3 under 'ustack run --link "rate 10mbit delay 25ms"'
// (both ways, 1500-byte MTU as on Ethernet) against an iperf3 server on
// the host measures 9.2 to 10.0 Mbit/s of TCP goodput: the rate less the
// headers (1448 bytes of payload in 1514-byte frames is 9.56 Mbit/s), the
// first second, slow start's, left out (-O 1).
func TestLinkRate(t *testing.T) {
	need(t, "iperf3")
	port := hostIperf3(t)
	p := run(t, []string{"--mtu", "1500", "--link", "rate 10mbit delay 25ms"},
		"iperf3", "-c", "10.0.2.2", "-p", fmt.Sprint(port), "-t", "6", "-O", "1", "-J")
	p.mustSucceed(90 * time.Second)
	r := parseIperf(t, []byte(p.stdout.String()))
	mbps := r.End.SumReceived.BitsPerSecond / 1e6
	t.Logf("iperf3 over a 10 Mbit/s link with 25 ms each way: %.3f Mbit/s received", mbps)
	if mbps < 9.2 {
		t.Errorf("%.3f Mbit/s over a 10 Mbit/s link, want at least 9.2", mbps)
	}
	if mbps > 10.0 {
		t.Errorf("%.3f Mbit/s over a 10 Mbit/s link, want at most 10.0", mbps)
	}
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// TestLinkDelay: ping under 'ustack run --link "delay 25ms"' to the nat
// gateway measures a round trip of 50 to 52 ms (median of 20). Under the
// race detector, whose ustack is slower, the upper bound is only logged.
func TestLinkDelay(t *testing.T) {
	need(t, "ping")
	p := run(t, []string{"--link", "delay 25ms"}, "ping", "-c", "20", "-i", "0.2", "10.0.2.2")
	p.mustSucceed(60 * time.Second)
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(p.stdout.String(), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, v)
	}
	if len(rtts) < 19 {
		t.Fatalf("%d replies of 20; ping said:\n%s", len(rtts), p.stdout.String())
	}
	slices.Sort(rtts)
	median := rtts[len(rtts)/2]
	t.Logf("ping over 25 ms each way: median %.3f ms, min %.3f, max %.3f", median, rtts[0], rtts[len(rtts)-1])
	if median < 50 {
		t.Errorf("median round trip %.3f ms over 25 ms each way, want at least 50", median)
	}
	if median > 52 {
		if raceEnabled {
			t.Logf("median round trip %.3f ms, above 52 ms: not held under the race detector", median)
		} else {
			t.Errorf("median round trip %.3f ms over 25 ms each way, want at most 52", median)
		}
	}
}
