package ustack_test

import (
	"errors"
	"testing"

	"github.com/ustack/ustack"
)

func TestLinkLossValidation(t *testing.T) {
	for _, f := range []float64{-0.1, 1, 1.5} {
		_, _, err := ustack.NewPair(ustack.Config{LinkLoss: ustack.LinkLoss{Fraction: f}}, ustack.Config{})
		var ce *ustack.ConfigError
		if !errors.As(err, &ce) || ce.Field != "LinkLoss" {
			t.Errorf("LinkLoss fraction %v: %v; want a ConfigError naming LinkLoss", f, err)
		}
	}
}
