package ustack

import (
	"fmt"

	"github.com/ustack/ustack/mutate"
)

// validateMutate checks Config.Mutate.
func validateMutate(rules []mutate.Rule) error {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return &ConfigError{Field: "Mutate", Err: fmt.Errorf("rule %d (%s): %w", i+1, r, err)}
		}
	}
	return nil
}

// Mutate returns the packet mutator's rules in force on the stack's NIC.
func (s *Stack) Mutate() []mutate.Rule { return s.mutator.Rules() }

// SetMutate puts rules in force on the stack's NIC in place of those
// before, for the frames that pass from now on; their counters start from
// zero. An invalid rule is a *ConfigError for the field "Mutate".
func (s *Stack) SetMutate(rules []mutate.Rule) error {
	if err := validateMutate(rules); err != nil {
		return err
	}
	return s.mutator.Set(rules)
}

// MutateStats returns each mutator rule's counters: frames matched, acted
// on, and added.
func (s *Stack) MutateStats() mutate.Stats { return s.mutator.Stats() }
