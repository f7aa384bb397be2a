package shape

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// netem turns a distribution into a table of 4096 samples of its inverse
// cumulative distribution, in units of the jitter scaled by 8192 and
// clamped to an int16, and draws a delay as Delay + Jitter·table[i]/8192
// with i uniform. The tables iproute2 ships are generated from defining
// formulas (its netem/normal.c, pareto.c, paretonormal.c); these are built
// from the same formulas, so a jitter drawn here has netem's shape: a
// standard normal cut at about ±4, and a Pareto of shape 3 shifted to
// mean 0 and scaled by 4/3 (so it runs from -2/3 up to a clamp at +4).
const (
	distTableSize = 4096
	distScale     = 8192
)

type distTable [distTableSize]int16

var distTables = sync.OnceValue(func() map[Distribution]*distTable {
	normal, pareto, mixed := new(distTable), new(distTable), new(distTable)
	for k := range distTableSize {
		// Entry k is the normal quantile at (4k+0.5)/16384: the generator
		// records, for every 16384th of probability, the largest x that
		// rounds to it, and keeps every fourth.
		x := math.Sqrt2 * math.Erfinv(2*((4*float64(k)+0.5)/16384)-1)
		n := clamp16(math.RoundToEven(x * distScale))
		// Pareto with shape 3: u^(-1/3) for u from 1 down to 1/4096.
		u := 1 - float64(k)/distTableSize
		p := clamp16(math.RoundToEven((math.Pow(u, -1.0/3) - 1.5) * (4.0 / 3) * distScale))
		normal[k], pareto[k] = n, p
		// A quarter normal and three quarters Pareto, integer-averaged.
		mixed[k] = clamp16(float64((int(n) + 3*int(p)) / 4))
	}
	return map[Distribution]*distTable{Normal: normal, Pareto: pareto, ParetoNormal: mixed}
})

func clamp16(v float64) int16 {
	return int16(max(math.MinInt16, min(math.MaxInt16, v)))
}

// sampleDelay draws one delay for spec s, never below zero.
func sampleDelay(s *Spec, rng *rand.Rand) time.Duration {
	mu, sigma := int64(s.Delay), int64(s.Jitter)
	if sigma == 0 {
		return s.Delay
	}
	var d int64
	if s.Distribution == Uniform {
		d = mu - sigma + rng.Int64N(2*sigma)
	} else {
		t := int64(distTables()[s.Distribution][rng.IntN(distTableSize)])
		x := sigma * t
		// Round to the nearest nanosecond, halves away from zero.
		if x >= 0 {
			x += distScale / 2
		} else {
			x -= distScale / 2
		}
		d = mu + x/distScale
	}
	return time.Duration(max(d, 0))
}
