package semantics

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/ustack/ustack/intercept"
	"github.com/ustack/ustack/internal/testprog"
	"github.com/ustack/ustack/internal/testwait"
)

// kernelNetwork sets a network namespace up as `ustack run`'s stack is by
// default: lo, and eth0 (a veth whose peer is in another namespace, so that
// it has its carrier) with the stack's MAC, MTU, addresses and default
// routes. IPv6 makes no link-local address and no duplicate address
// detection: the stack has neither.
const kernelNetwork = `ip link set lo up &&
ip link add %[2]s netns %[1]d type veth peer name eth0 &&
nsenter -t %[1]d -n ip link set %[2]s up &&
ip link set eth0 address 52:54:00:12:34:56 mtu 65520 addrgenmode none &&
ip link set eth0 up &&
ip addr add 10.0.2.15/24 brd + dev eth0 &&
ip addr add fd00::15/64 dev eth0 nodad &&
ip route add default via 10.0.2.2 &&
ip -6 route add default via fd00::2 &&
exec `

// TestNetworkView: what a program reads of the network (interfaces,
// addresses, routes, neighbours and sockets over netlink, and the
// interface ioctls), the changes it makes, and how malformed requests are
// refused, are the same in a network namespace set up as the stack is and
// under ustack run, where the stack answers.
func TestNetworkView(t *testing.T) {
	if err := intercept.CheckKernel(); err != nil {
		t.Skipf("this kernel cannot run programs under ustack: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace with a veth of its own)")
	}
	for _, prog := range []string{"unshare", "nsenter", "ip", "sh", "sleep"} {
		testprog.Need(t, prog)
	}
	// The namespace that holds the veth's other end.
	holder := exec.Command("unshare", "-n", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	testwait.ForNil(t, "the holder's network namespace", func() error {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
		if err != nil || ns == own {
			return fmt.Errorf("the holder is still in ours (%v)", err)
		}
		return nil
	})
	for i, scenario := range []string{"nl-view", "nl-change", "nl-malformed", "nl-diag", "ifioctl"} {
		t.Run(scenario, func(t *testing.T) {
			// The peer of each run's eth0 has a name of its own: the last
			// one goes when its namespace is torn down, in the background.
			setup := fmt.Sprintf(kernelNetwork, holder.Process.Pid, fmt.Sprint("peer", i))
			kernel := run(t, "unshare", "-n", "sh", "-c", setup+probeBin+" "+scenario)
			user := run(t, ustackBin, "run", "--", probeBin, scenario)
			if kernel != user {
				t.Errorf("the program saw different things.\non the kernel:\n%s\nunder ustack:\n%s", kernel, user)
			}
		})
	}
}
