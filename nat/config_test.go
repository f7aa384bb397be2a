package nat

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Publish
		bad  bool
	}{
		{spec: "8080:80", want: Publish{Proto: "tcp", HostPort: 8080, GuestPort: 80}},
		{spec: "127.0.0.1:8080:80", want: Publish{Proto: "tcp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, GuestPort: 80}},
		{spec: "[::1]:5353:53/udp", want: Publish{Proto: "udp", HostAddr: netip.MustParseAddr("::1"), HostPort: 5353, GuestPort: 53}},
		{spec: "0:80/TCP", want: Publish{Proto: "tcp", HostPort: 0, GuestPort: 80}},
		{spec: "80", bad: true},
		{spec: "8080:0", bad: true},
		{spec: "8080:80/sctp", bad: true},
		{spec: "70000:80", bad: true},
		{spec: "host:8080:80", bad: true},
		{spec: "", bad: true},
	} {
		got, err := ParsePublish(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("ParsePublish(%q) = %v, want an error", tc.spec, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePublish(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
		if again, err := ParsePublish(got.String()); err != nil || again != got {
			t.Errorf("String() %q does not parse back: %+v, %v", got.String(), again, err)
		}
	}
}

func TestHostResolvers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("# systemd stub\nnameserver 127.0.0.53\noptions edns0\nsearch example.org\nnameserver fe80::1%eth0\nnameserver bogus\n"), 0o644)
	got, err := HostResolvers(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53"), netip.MustParseAddrPort("[fe80::1]:53")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HostResolvers = %v, want %v", got, want)
	}
	if _, err := HostResolvers(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing resolv.conf gave no error")
	}
}
