package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// option is one command-line flag. Names are given without dashes; a
// one-letter name is written -x, a longer one --name. The first name is the
// one errors use; the longest names the environment variable.
type option struct {
	names  []string
	arg    string // placeholder for the value ("CIDR"); empty for a switch
	help   string
	repeat bool // may be given more than once
	value  flag.Value
	// envSep separates the values of a repeatable flag in its environment
	// variable; "," unless the values themselves may contain commas.
	envSep string
}

// display is how the flag is written in messages: -p, --ip.
func (o *option) display() string { return dashed(o.names[0]) }

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// envName is USTACK_ followed by the longest name, upper case, dashes as
// underscores: --dns-upstream is USTACK_DNS_UPSTREAM, -p/--publish is
// USTACK_PUBLISH.
func (o *option) envName() string {
	long := o.names[0]
	for _, n := range o.names {
		if len(n) > len(long) {
			long = n
		}
	}
	return "USTACK_" + strings.ToUpper(strings.ReplaceAll(long, "-", "_"))
}

// usage is the flag's line in help texts.
func (o *option) usage() string {
	var names []string
	for _, n := range o.names {
		names = append(names, dashed(n))
	}
	s := strings.Join(names, ", ")
	if o.arg != "" {
		s += " " + o.arg
	}
	return s
}

// usageError is a mistake in how ustack was called; it exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// flagError is a flag whose value was refused.
func flagError(o *option, env string, err error) error {
	where := o.display()
	if env != "" {
		where += " (from " + env + ")"
	}
	return usagef("%s: %v", where, err)
}

// optionSet is the flags of one command.
type optionSet struct {
	cmd  string
	opts []*option
	// given records the flags set on the command line (not from the
	// environment), by first name.
	given map[string]bool
	// argsAfterFirst: the first positional argument ends the flags, so
	// that "ustack run PROG -x" leaves -x to PROG.
	argsAfterFirst bool
	// bundled: one-letter switches may be written together, as ss(8)
	// users do: -tuni is -t -u -n -i.
	bundled bool
}

func (s *optionSet) add(o *option) { s.opts = append(s.opts, o) }

func (s *optionSet) lookup(name string) *option {
	for _, o := range s.opts {
		for _, n := range o.names {
			if n == name {
				return o
			}
		}
	}
	return nil
}

// parse applies args, then the environment for the flags args did not set
// (so the command line wins, and a bad environment value it overrides does
// no harm), and returns the positional arguments. Flags may come before,
// between and after positional arguments; "--" ends the flags. A request
// for help returns errHelp.
func (s *optionSet) parse(args []string, getenv func(string) (string, bool)) ([]string, error) {
	s.given = map[string]bool{}
	if s.bundled {
		args = s.unbundle(args)
	}
	fs := flag.NewFlagSet(s.cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var setErr error // the flag package's message loses our wording; keep ours
	for _, o := range s.opts {
		for _, n := range o.names {
			fs.Var(&recordingValue{Value: o.value, opt: o, err: &setErr, given: s.given}, n, o.help)
		}
	}
	var positional []string
	for {
		setErr = nil
		before := args
		if err := fs.Parse(args); err != nil {
			return nil, s.parseError(err, setErr)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		// fs.Parse stops at the first positional argument, or after a "--"
		// it consumed; after "--" everything left is positional.
		if n := len(before) - len(args); n > 0 && before[n-1] == "--" || s.argsAfterFirst {
			positional = append(positional, args...)
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if err := s.applyEnv(getenv); err != nil {
		return nil, err
	}
	return positional, nil
}

// unbundle splits -abc into -a -b -c when every letter is a one-letter
// switch of the set; anything else is left for the parser to judge.
func (s *optionSet) unbundle(args []string) []string {
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' || strings.Contains(a, "=") {
			out = append(out, a)
			continue
		}
		split := make([]string, 0, len(a)-1)
		for _, r := range a[1:] {
			o := s.lookup(string(r))
			if o == nil || o.arg != "" {
				split = nil
				break
			}
			split = append(split, "-"+string(r))
		}
		if split == nil {
			out = append(out, a)
		} else {
			out = append(out, split...)
		}
	}
	return out
}

func (s *optionSet) applyEnv(getenv func(string) (string, bool)) error {
	for _, o := range s.opts {
		env := o.envName()
		v, ok := getenv(env)
		if !ok || v == "" || s.given[o.names[0]] {
			continue
		}
		vals := []string{v}
		if o.repeat {
			vals = splitEnv(v, o.envSep)
		}
		for _, x := range vals {
			if err := o.value.Set(x); err != nil {
				return flagError(o, env, err)
			}
		}
	}
	return nil
}

// parseError turns the flag package's error into ustack's one-line form.
func (s *optionSet) parseError(err, setErr error) error {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return errHelp
	case setErr != nil:
		return setErr
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return usagef("%s: unknown flag (see: ustack %s --help)", dashed(strings.TrimLeft(name, "-")), s.cmd)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		if o := s.lookup(strings.TrimLeft(name, "-")); o != nil {
			return usagef("%s: missing value (give it as %s)", o.display(), o.usage())
		}
	}
	return usagef("%s (see: ustack %s --help)", msg, s.cmd)
}

var errHelp = errors.New("help requested")

// splitEnv splits a repeatable flag's environment value on sep and, for
// --sysctl's ";", also on newlines.
func splitEnv(v, sep string) []string {
	if sep == "" {
		sep = ","
	}
	f := func(r rune) bool { return strings.ContainsRune(sep, r) || (sep == ";" && r == '\n') }
	var out []string
	for _, p := range strings.FieldsFunc(v, f) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// recordingValue keeps the value's own error message and notes which flags
// the command line set.
type recordingValue struct {
	flag.Value
	opt   *option
	err   *error
	given map[string]bool
}

func (r *recordingValue) Set(v string) error {
	r.given[r.opt.names[0]] = true
	if err := r.Value.Set(v); err != nil {
		*r.err = flagError(r.opt, "", err)
		return err
	}
	return nil
}

func (r *recordingValue) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Value types. Each Set checks its input and says what is wrong and how to
// write it right.

type stringValue struct{ p *string }

func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

type boolValue struct{ p *bool }

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not a boolean (use true or false)", s)
	}
	*v.p = b
	return nil
}
func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}
func (v boolValue) IsBoolFlag() bool { return true }

type intValue struct {
	p        *int
	min, max int
	what     string // "a packet count"
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not a whole number (give %s, e.g. %d)", s, v.what, v.min)
	}
	if n < v.min || n > v.max {
		return fmt.Errorf("%d is out of range (use %d to %d)", n, v.min, v.max)
	}
	*v.p = n
	return nil
}
func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

type durationValue struct {
	p   *time.Duration
	min time.Duration
}

// Set takes a Go duration (1.5s, 200ms) or, as ping(8) does, plain seconds.
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return fmt.Errorf("%q is not a duration (use seconds like 0.2, or 200ms, 1s)", s)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < v.min {
		return fmt.Errorf("%s is too short (use at least %s)", d, v.min)
	}
	*v.p = d
	return nil
}
func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

// listValue collects a repeatable flag's values, each checked by parse.
type listValue[T any] struct {
	p     *[]T
	parse func(string) (T, error)
}

func (v *listValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = append(*v.p, x)
	return nil
}

func (v *listValue[T]) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	var parts []string
	for _, x := range *v.p {
		parts = append(parts, fmt.Sprint(x))
	}
	return strings.Join(parts, ",")
}

// sortedNames lists the commands for help output.
func sortedNames(m map[string]*command) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lookupEnv is os.LookupEnv; tests of the parser pass their own.
var lookupEnv = os.LookupEnv
