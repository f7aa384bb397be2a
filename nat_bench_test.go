package ustack_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/ustack/ustack"
)

// BenchmarkNATFetch measures an HTTP GET of 64 MiB from a server on the
// host's loopback, through the nat attachment (host socket -> gateway
// netstack -> in-memory link -> user-level stack), at nat's default MTU
// and at 1500.
func BenchmarkNATFetch(b *testing.B) {
	const size = 64 << 20
	chunk := make([]byte, 1<<20)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for i := 0; i < size/len(chunk); i++ {
			w.Write(chunk)
		}
	})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	url := fmt.Sprintf("http://10.0.2.2:%d/", ln.Addr().(*net.TCPAddr).Port)
	for _, mtu := range []int{0, 1500} {
		name := "mtu=default"
		if mtu != 0 {
			name = fmt.Sprintf("mtu=%d", mtu)
		}
		b.Run(name, func(b *testing.B) {
			s, err := ustack.New(ustack.Config{MTU: mtu})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			client := &http.Client{Transport: &http.Transport{DialContext: s.DialContext}}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
			b.ReportMetric(float64(size)*8*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gbit/s")
		})
	}
}
