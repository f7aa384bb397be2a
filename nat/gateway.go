package nat

import (
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Gateway is the far end of a nat link.
type Gateway struct{}

// New starts a gateway on lower.
func New(cfg Config, lower stack.LinkEndpoint) (*Gateway, error) { return &Gateway{}, nil }

// Close stops the gateway.
func (g *Gateway) Close() {}
