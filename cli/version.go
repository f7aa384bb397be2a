package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ustack/ustack/cc"
	"github.com/ustack/ustack/netstack/source"
)

// Version is ustack's version; release builds set it with
// -ldflags "-X github.com/ustack/ustack/cli.Version=v1.2.3". Otherwise the
// module version from the build information is used.
var Version = ""

const gvisorModule = "gvisor.dev/gvisor"

func versionCommand() *command {
	c := &command{name: "version", summary: "print the versions of ustack, Go and gVisor, and whether netstack is modified"}
	c.options = func() (*optionSet, func(context.Context, *env, []string) error) {
		return &optionSet{cmd: c.name}, func(_ context.Context, e *env, args []string) error {
			if err := wantArgs(c.name, args); err != nil {
				return err
			}
			v, gv := versions()
			st, err := source.Read()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "ustack %s\ngo %s\ngvisor %s\nnetstack %s\n", v, runtime.Version(), gv, st)
			for _, name := range cc.Names() {
				fmt.Fprintf(e.stdout, "cc %s\t%s\n", name, cc.About(name))
			}
			return nil
		}
	}
	return c
}

// versions reads ustack's and gVisor's versions from the build information.
func versions() (ustackVersion, gvisorVersion string) {
	ustackVersion, gvisorVersion = Version, "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return orDevel(ustackVersion), gvisorVersion
	}
	if ustackVersion == "" {
		ustackVersion = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path != gvisorModule {
			continue
		}
		gvisorVersion = gvisorModule + " " + d.Version
		if d.Replace != nil {
			gvisorVersion += " => " + strings.TrimSpace(d.Replace.Path+" "+d.Replace.Version)
		}
	}
	return orDevel(ustackVersion), gvisorVersion
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
