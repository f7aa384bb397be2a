package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// parseIperf reads iperf3 -J's figure as measured at the receiver, in Gbit/s.
func parseIperf(out string) (float64, error) {
	// Anything before the JSON object (a line of ustack's) is skipped.
	i := strings.Index(out, "{")
	if i < 0 {
		return 0, fmt.Errorf("iperf3: no JSON in output: %q", lastLine(out))
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&r); err != nil {
		return 0, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3: no end.sum_received.bits_per_second")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

var (
	sockperfP50 = regexp.MustCompile(`---> percentile 50\.0+ =\s*([0-9.]+)`)
	wrkRate     = regexp.MustCompile(`Requests/sec:\s*([0-9.]+)`)
	wrkErrors   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	pgbenchTPS  = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
)

func parseSockperf(out string) (float64, error) {
	return parseRegexp(out, sockperfP50, "sockperf p50")
}

// parseWrk reads wrk's request rate. Read errors are ordinary with
// Connection: close; connect errors and timeouts make the figure worthless.
func parseWrk(out string) (float64, error) {
	if m := wrkErrors.FindStringSubmatch(out); m != nil && (m[1] != "0" || m[4] != "0") {
		return 0, fmt.Errorf("wrk: %s", m[0])
	}
	return parseRegexp(out, wrkRate, "wrk Requests/sec")
}

func parsePgbench(out string) (float64, error) {
	return parseRegexp(out, pgbenchTPS, "pgbench tps")
}

func parseRegexp(out string, re *regexp.Regexp, what string) (float64, error) {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no %s in output: %q", what, lastLine(out))
	}
	return strconv.ParseFloat(m[1], 64)
}

// parseKey reads KEY=NUMBER from the helpers' output.
func parseKey(out, key string) (float64, error) {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s= in output: %q", key, lastLine(out))
}
