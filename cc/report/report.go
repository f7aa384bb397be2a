// Package report compares congestion control algorithms on one dumbbell
// (package dumbbell): for each algorithm and each condition (bottleneck
// buffer, random loss) it runs two flows of the algorithm together and the
// algorithm against a Reno flow, and tabulates goodput, the bottleneck's
// queueing delay, retransmissions and Jain's fairness as Markdown, with
// plots. cmd/ccreport is its command.
package report

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/cc/dumbbell"
)

// Condition is one bottleneck setting.
type Condition struct {
	Buffer float64 // in BDPs
	Loss   float64 // random loss of the data direction, 0 to 1
}

func (c Condition) String() string {
	buf := "BDP"
	if c.Buffer != 1 {
		buf = fmt.Sprintf("%g×BDP", c.Buffer)
	}
	return fmt.Sprintf("buffer %s, loss %g %%", buf, 100*c.Loss)
}

// slug names c in file names.
func (c Condition) slug() string {
	return fmt.Sprintf("buf%gbdp-loss%gpct", c.Buffer, 100*c.Loss)
}

// Options say what to run.
type Options struct {
	Algorithms []string // package cc's names; all registered when empty
	Conditions []Condition
	Rate       uint64        // bottleneck rate, bit/s
	RTT        time.Duration // base round trip
	Warmup     time.Duration // before the measured window
	Duration   time.Duration // measured window
	Parallel   int           // runs at once (at least 1)
	Seed       uint64        // of the loss
	// Progress, if set, gets a line per finished run.
	Progress io.Writer
}

// Full is the whole comparison: 10 Mbit/s, 20 ms, buffers of one and five
// BDPs, no loss and 1 %, 5 s of warm-up and 20 s measured per run.
func Full() Options {
	return Options{
		Conditions: []Condition{{1, 0}, {5, 0}, {1, 0.01}, {5, 0.01}},
		Rate:       10e6, RTT: 20 * time.Millisecond,
		Warmup: 5 * time.Second, Duration: 20 * time.Second,
		Parallel: 6, Seed: 1,
	}
}

// Quick is a smoke test of the same: two conditions, 1 s of warm-up and
// 3 s measured.
func Quick() Options {
	o := Full()
	o.Conditions = []Condition{{1, 0}, {5, 0.01}}
	o.Warmup, o.Duration = time.Second, 3*time.Second
	return o
}

// Cell is one algorithm under one condition.
type Cell struct {
	Algorithm string
	Condition Condition
	Same      *dumbbell.Result // two flows of the algorithm
	VsReno    *dumbbell.Result // the algorithm (flow 0) and Reno (flow 1)
}

// Goodput is both flows' goodput together in the same-algorithm run, bit/s.
func (c *Cell) Goodput() float64 { return c.Same.TotalGoodput() }

// Delay is the q quantile of the queueing delay in the same-algorithm run.
func (c *Cell) Delay(q float64) time.Duration { return c.Same.Sojourn.Quantile(q) }

// Retrans is both flows' retransmitted segments in the same-algorithm run.
func (c *Cell) Retrans() uint64 { return c.Same.Flows[0].Retrans + c.Same.Flows[1].Retrans }

// JainSame is Jain's index of the two flows of the algorithm.
func (c *Cell) JainSame() float64 {
	return dumbbell.Jain(c.Same.Flows[0].Goodput, c.Same.Flows[1].Goodput)
}

// JainReno is Jain's index of the algorithm's flow and Reno's.
func (c *Cell) JainReno() float64 {
	return dumbbell.Jain(c.VsReno.Flows[0].Goodput, c.VsReno.Flows[1].Goodput)
}

// ShareReno is the algorithm's share of the goodput against Reno (0.5 is
// an even split).
func (c *Cell) ShareReno() float64 {
	a, r := c.VsReno.Flows[0].Goodput, c.VsReno.Flows[1].Goodput
	if a+r == 0 {
		return 0
	}
	return a / (a + r)
}

// Failures describes the flows of the cell's runs whose connection
// failed.
func (c *Cell) Failures() []string {
	var out []string
	for _, run := range []struct {
		what string
		res  *dumbbell.Result
	}{{"two " + c.Algorithm + " flows", c.Same}, {c.Algorithm + " against reno", c.VsReno}} {
		for i, f := range run.res.Flows {
			if f.Err != "" {
				out = append(out, fmt.Sprintf("%s, flow %d (%s): %s", run.what, i+1, f.CC, f.Err))
			}
		}
	}
	return out
}

// Report is every cell, by condition then algorithm, in Options' order.
type Report struct {
	Options Options
	Cells   [][]*Cell // [condition][algorithm]
	Took    time.Duration
}

// Run runs the comparison.
func Run(ctx context.Context, o Options) (*Report, error) {
	if len(o.Algorithms) == 0 {
		o.Algorithms = cc.Names()
	}
	for _, a := range o.Algorithms {
		if err := cc.Check(a); err != nil {
			return nil, err
		}
	}
	if len(o.Conditions) == 0 {
		return nil, fmt.Errorf("report: no conditions")
	}
	o.Parallel = max(o.Parallel, 1)
	start := time.Now()
	r := &Report{Options: o, Cells: make([][]*Cell, len(o.Conditions))}
	type job struct {
		cell   *Cell
		vsReno bool
	}
	var jobs []job
	for i, cond := range o.Conditions {
		for _, a := range o.Algorithms {
			c := &Cell{Algorithm: a, Condition: cond}
			r.Cells[i] = append(r.Cells[i], c)
			jobs = append(jobs, job{c, false}, job{c, true})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	next := make(chan job)
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				res, err := dumbbell.Run(ctx, o.config(j.cell, j.vsReno))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s, %s: %w", j.cell.Algorithm, j.cell.Condition, err)
					cancel()
				}
				if err == nil {
					if j.vsReno {
						j.cell.VsReno = res
					} else {
						j.cell.Same = res
					}
					done++
					if o.Progress != nil {
						what := "2×" + j.cell.Algorithm
						if j.vsReno {
							what = j.cell.Algorithm + " vs reno"
						}
						fmt.Fprintf(o.Progress, "[%d/%d] %s, %s: %.2f Mbit/s\n", done, len(jobs), what, j.cell.Condition, res.TotalGoodput()/1e6)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.Took = time.Since(start)
	return r, nil
}

// config is the dumbbell of one run.
func (o Options) config(c *Cell, vsReno bool) dumbbell.Config {
	other := c.Algorithm
	if vsReno {
		other = "reno"
	}
	bdp := dumbbell.BDP(o.Rate, o.RTT)
	return dumbbell.Config{
		Rate: o.Rate, RTT: o.RTT, Buffer: max(int(c.Condition.Buffer*bdp+0.5), 1),
		Loss: c.Condition.Loss, Seed: o.Seed,
		Warmup: o.Warmup, Duration: o.Duration, Sample: 50 * time.Millisecond,
		Flows: []dumbbell.Flow{{CC: c.Algorithm}, {CC: other}},
	}
}

// Markdown is the report's tables, one per condition, and its plots'
// links (plots names the files Plot wrote, relative to the Markdown).
func (r *Report) Markdown(plots []string) string {
	o := r.Options
	var b strings.Builder
	bdp := dumbbell.BDP(o.Rate, o.RTT)
	fmt.Fprintf(&b, "# Congestion control comparison\n\n")
	fmt.Fprintf(&b, "Generated by `go run ./cmd/ccreport` in %s. Each algorithm of package `cc` runs in netstack's TCP over one emulated bottleneck between two in-process ustack stacks (package `cc/dumbbell`): %g Mbit/s, %v base RTT (half each way), a drop-tail buffer of one or five BDPs (BDP = %.1f frames of %d bytes) and random loss of the data direction. ",
		r.Took.Round(time.Second), float64(o.Rate)/1e6, o.RTT, bdp, dumbbell.FrameBytes)
	fmt.Fprintf(&b, "Each cell is two runs of %v (measured after %v of warm-up): two flows of the algorithm started together, and the algorithm against a Reno flow.\n\n", o.Duration, o.Warmup)
	fmt.Fprintf(&b, "- **goodput**: both flows of the algorithm together, Mbit/s of payload (at most %.2f: 1448 bytes of payload per 1514-byte frame)\n", float64(o.Rate)*dumbbell.PayloadBytes/dumbbell.FrameBytes/1e6)
	b.WriteString("- **p50, p99 delay**: the bottleneck's queueing delay, the time each packet waited for the link, from the link emulator's own schedule (two flows of the algorithm)\n")
	b.WriteString("- **retrans**: segments the two flows retransmitted (netstack's counter, as TCP_INFO's)\n")
	b.WriteString("- **Jain same**: Jain's fairness index of the two flows of the algorithm (1 is an even split, 0.5 one flow taking everything)\n")
	b.WriteString("- **Jain, share vs Reno**: the index of the algorithm's flow and a Reno flow, and the algorithm's share of their goodput\n\n")
	b.WriteString("Runs take real time and ran several at once; the link emulator's rate and queueing delays do not depend on the machine's load, goodput over the window does a little.\n\n")
	for i, cond := range o.Conditions {
		fmt.Fprintf(&b, "## %s\n\n", cond)
		b.WriteString("| algorithm | goodput (Mbit/s) | p50 delay (ms) | p99 delay (ms) | retrans | Jain same | Jain vs Reno | share vs Reno |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		var failures []string
		for _, c := range r.Cells[i] {
			name := c.Algorithm
			if f := c.Failures(); len(f) > 0 {
				name += " †"
				failures = append(failures, strings.Join(f, "; "))
			}
			fmt.Fprintf(&b, "| %s | %.2f | %.1f | %.1f | %d | %.3f | %.3f | %.2f |\n", name, c.Goodput()/1e6,
				ms(c.Delay(0.5)), ms(c.Delay(0.99)), c.Retrans(), c.JainSame(), c.JainReno(), c.ShareReno())
		}
		b.WriteString("\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "† A connection failed during the run (its figures count until then): %s\n\n", f)
		}
	}
	if len(plots) > 0 {
		b.WriteString("## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", p, p)
		}
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
