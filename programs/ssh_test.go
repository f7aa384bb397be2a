package programs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSSH: ssh under 'ustack run' logs in to an sshd the test runs on the
// host's loopback (own host key, authorized_keys and configuration in a
// temporary directory, a free port) through 10.0.2.2 and runs a command.
func TestSSH(t *testing.T) {
	needRoot(t, "sshd runs as root and the test logs in as root")
	need(t, "ssh")
	keygen := need(t, "ssh-keygen")
	sshd := need(t, "sshd")
	dir := t.TempDir()
	for _, key := range []string{"host_key", "id"} {
		if b, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, key)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, b)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// StrictModes no: the keys sit under /tmp, which is world-writable.
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host_key
AuthorizedKeysFile %[2]s/authorized_keys
PidFile %[2]s/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
`, port, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege separation directory,
	// which the Debian service makes at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	srv := start(t, nil, sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	srv.waitOutput("Server listening on 127.0.0.1 port")

	p := run(t, nil, "ssh", "-p", fmt.Sprint(port), "-i", filepath.Join(dir, "id"),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=20", "root@10.0.2.2", "echo", "hello")
	p.mustSucceed(60 * time.Second)
	if got := p.stdout.String(); got != "hello\n" {
		t.Fatalf("ssh printed %q, want %q; stderr:\n%s", got, "hello\n", p.stderr.String())
	}
	if !strings.Contains(srv.stderr.String(), "Accepted publickey for root from 127.0.0.1") {
		t.Fatalf("sshd did not log the login; its log:\n%s", srv.stderr.String())
	}
}
