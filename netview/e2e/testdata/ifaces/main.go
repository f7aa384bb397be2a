// Command ifaces prints what Go's net package says of the machine's
// network interfaces, as JSON: net.Interfaces with each one's addresses,
// then net.InterfaceAddrs. Built static (CGO_ENABLED=0), it reads them
// over netlink itself (syscall.NetlinkRIB), as every Go program does.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
)

type iface struct {
	Index int      `json:"index"`
	Name  string   `json:"name"`
	MTU   int      `json:"mtu"`
	MAC   string   `json:"mac"`
	Flags string   `json:"flags"`
	Addrs []string `json:"addrs"`
}

func main() {
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Fprintln(os.Stderr, "net.Interfaces:", err)
		os.Exit(1)
	}
	var out struct {
		Interfaces []iface  `json:"interfaces"`
		Addrs      []string `json:"addrs"`
	}
	for _, i := range ifs {
		x := iface{Index: i.Index, Name: i.Name, MTU: i.MTU, MAC: i.HardwareAddr.String(), Flags: i.Flags.String()}
		addrs, err := i.Addrs()
		if err != nil {
			fmt.Fprintln(os.Stderr, "Addrs:", err)
			os.Exit(1)
		}
		for _, a := range addrs {
			x.Addrs = append(x.Addrs, a.String())
		}
		out.Interfaces = append(out.Interfaces, x)
	}
	all, err := net.InterfaceAddrs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "net.InterfaceAddrs:", err)
		os.Exit(1)
	}
	for _, a := range all {
		out.Addrs = append(out.Addrs, a.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
