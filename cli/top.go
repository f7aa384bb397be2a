package cli

import (
	"context"
	"fmt"
	"os"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/ustack/ustack/control/api"
	"github.com/ustack/ustack/top"
)

func topCommand() *command {
	c := &command{name: "top", args: "[NAME]", summary: "watch a stack's connections and control blocks live"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		return s, func(ctx context.Context, e *env, args []string) error {
			client, err := pickStack(ctx, c.name, args)
			if err != nil {
				return err
			}
			fetch := func(ctx context.Context) (api.SocketsReply, error) {
				var r api.SocketsReply
				err := getFrom(ctx, c.name, client, "/v1/sockets?info=1", &r)
				return r, err
			}
			// Fail before taking the terminal if the stack is not there.
			if _, err := fetch(ctx); err != nil {
				return err
			}
			// q and Ctrl-C arrive as keys (the terminal is raw); SIGINT
			// and SIGTERM from elsewhere end the context, and bubbletea
			// restores the terminal either way.
			p := tea.NewProgram(top.New(ctx, client.Name, fetch), tea.WithAltScreen(), tea.WithContext(ctx),
				tea.WithInput(os.Stdin), tea.WithOutput(fileOr(e.stdout, os.Stdout)))
			if _, err := p.Run(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("top: %w", err)
			}
			return nil
		}
	}
	return c
}
