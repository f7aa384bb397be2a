package shape

import "math/rand/v2"

// lossState is the memory of the Markov loss models: the state of the
// chain, 1 to 4 as numbered by FourState (the Gilbert-Elliott model uses
// 1 for good and 3 for bad).
type lossState uint8

const (
	stateGood     lossState = 1 // the 4-state model's "received in a gap"; the zero value counts as it
	stateBurstRx  lossState = 2 // received within a burst
	stateBad      lossState = 3 // lost within a burst
	stateIsolated lossState = 4 // an isolated loss
)

// lose decides whether the next packet is lost, in netem's way.
func (st *lossState) lose(l *Loss, rng *rand.Rand) bool {
	switch l.Model {
	case LossRandom:
		return l.Random > 0 && rng.Float64() < l.Random
	case LossGilbertElliott:
		// One draw moves the chain, a second decides the loss with the
		// probability of the state the packet found (netem's order).
		g := &l.GE
		if *st == stateBad {
			if rng.Float64() < g.R {
				*st = stateGood
			}
			return rng.Float64() < g.LossBad
		}
		if rng.Float64() < g.P {
			*st = stateBad
		}
		return rng.Float64() < g.LossGood
	case LossFourState:
		// One draw picks the transition; entering state 3 or 4 loses the
		// packet.
		f := &l.State
		r := rng.Float64()
		switch *st {
		case stateBurstRx:
			if r < f.P23 {
				*st = stateBad
				return true
			}
		case stateBad:
			switch {
			case r < f.P32:
				*st = stateBurstRx
			case r < f.P32+f.P31:
				*st = stateGood
			default:
				return true
			}
		case stateIsolated:
			*st = stateGood
		default:
			switch {
			case r < f.P14:
				*st = stateIsolated
				return true
			case r < f.P14+f.P13:
				*st = stateBad
				return true
			}
		}
	}
	return false
}
