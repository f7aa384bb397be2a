package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/ustack/ustack"
)

// dialFunc opens a TCP connection through some stack.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

func fetchCommand() *command {
	c := &command{name: "fetch", args: "URL", summary: "HTTP GET a URL over the user-level stack"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		s := &optionSet{cmd: c.name}
		var sf stackFlags
		var output, stackName string
		s.add(&option{names: []string{"o", "output"}, arg: "FILE", value: stringValue{&output},
			help: "write the body to FILE instead of stdout"})
		s.add(stackOption(&stackName))
		sf.register(s)
		sf.registerVerbose(s)
		return s, func(ctx context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args, "URL"); err != nil {
				return err
			}
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("fetch: %q is not an http:// or https:// URL (e.g. http://10.0.2.2:8000/file)", args[0])
			}
			dial, closeStack, err := stackDialer(s, &sf, stackName, e)
			if err != nil {
				return err
			}
			defer closeStack()
			return fetch(ctx, dial, u.String(), output, e)
		}
	}
	return c
}

// stackOption is --stack, shared by the commands that can use a daemon.
func stackOption(name *string) *option {
	return &option{names: []string{"stack"}, arg: "NAME", value: stringValue{name},
		help: "use the stack of the running 'ustack daemon --name NAME' instead of a new one (no stack flags then)"}
}

// stackDialer returns how to reach the network: a new stack built from the
// flags, or the daemon named by --stack. close releases the stack.
func stackDialer(s *optionSet, sf *stackFlags, stackName string, e *env) (dialFunc, func(), error) {
	if stackName != "" {
		if err := refuseStackFlags(s); err != nil {
			return nil, nil, err
		}
		c, err := daemonClient(stackName)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, network, address string) (net.Conn, error) {
			conn, err := c.Connect(ctx, network, address)
			if err != nil {
				return nil, stackError(c, err)
			}
			return conn, nil
		}, func() {}, nil
	}
	st, err := sf.newStack(logTo(e, "ustack"))
	if err != nil {
		return nil, nil, err
	}
	return st.DialContext, func() { closeStack(st, e) }, nil
}

// refuseStackFlags rejects stack flags given with --stack: the daemon's stack
// is already built, so they would be silently ignored.
func refuseStackFlags(s *optionSet) error {
	for _, n := range stackOptionNames {
		if s.given[n] {
			return usagef("%s: cannot be used with --stack (the daemon's stack is already configured; drop one of them)", s.lookup(n).display())
		}
	}
	return nil
}

func closeStack(st *ustack.Stack, e *env) {
	if err := st.Close(); err != nil {
		fmt.Fprintf(e.stderr, "ustack: closing the stack: %v\n", err)
	}
}

func logTo(e *env, prefix string) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(e.stderr, prefix+": "+format+"\n", args...)
	}
}

func fetch(ctx context.Context, dial dialFunc, rawURL, output string, e *env) error {
	// A Transport of our own: no proxy from the environment, no
	// connections kept after the command.
	tr := &http.Transport{DialContext: dial, DisableKeepAlives: true, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return usagef("fetch: %q: %v", rawURL, err)
	}
	req.Header.Set("User-Agent", "ustack-fetch")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", rawURL, fetchCause(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("fetch %s: server answered %s", rawURL, resp.Status)
	}
	var out io.Writer = e.stdout
	if output != "" && output != "-" {
		f, err := os.Create(output)
		if err != nil {
			return usagef("-o: %v (choose a writable path)", err)
		}
		defer f.Close()
		out = f
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("fetch %s: reading the body: %w", rawURL, fetchCause(ctx, err))
	}
	if f, ok := out.(*os.File); ok && f != os.Stdout {
		if err := f.Close(); err != nil {
			return fmt.Errorf("fetch %s: writing %s: %w", rawURL, output, err)
		}
	}
	return nil
}

// fetchCause strips net/http's `Get "URL":` wrapping (the URL is already in
// our message) and names an interruption as such.
func fetchCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
