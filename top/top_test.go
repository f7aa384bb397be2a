package top

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/ustack/ustack/control/api"
)

func conn(peerPort uint16, state string, sndUna, rcvNxt uint32, segsOut uint64) api.Socket {
	zero := 0
	return api.Socket{
		Netid: "tcp", State: state, RecvQ: &zero, SendQ: &zero,
		Local: api.Addr{IP: "10.0.2.15", Port: 8000},
		Peer:  api.Addr{IP: "10.0.2.2", Port: peerPort},
		TCP: &api.TCPInfo{CC: "cubic", SegsOut: segsOut, SegsIn: segsOut,
			ControlBlock: &api.ControlBlock{SndUna: sndUna, RcvNxt: rcvNxt, SndNxt: sndUna}},
	}
}

func snap(at time.Time, socks ...api.Socket) Snapshot {
	return Snapshot{Reply: api.SocketsReply{Name: "t", Sockets: socks}, At: at}
}

func TestRatesAndSort(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := New(context.Background(), "t", nil)
	m.Update(snap(t0, conn(1, "ESTAB", 100, 500, 10), conn(2, "ESTAB", 4294967000, 0, 10)))
	for _, r := range m.Rows {
		if r.SendRate != -1 || r.RecvRate != -1 {
			t.Errorf("first poll has rates: %+v", r)
		}
	}
	// Half a second later: conn 1 sent 1000 and received 3000 bytes; conn
	// 2's snd_una wrapped around 2^32 after 2000 bytes.
	m.Update(snap(t0.Add(500*time.Millisecond), conn(1, "ESTAB", 1100, 3500, 20), conn(2, "ESTAB", 1704, 0, 14)))
	want := map[uint16][3]float64{1: {2000, 6000, 20}, 2: {4000, 0, 8}}
	for _, r := range m.Rows {
		w := want[r.Socket.Peer.Port]
		if r.SendRate != w[0] || r.RecvRate != w[1] || r.SendSegs != w[2] {
			t.Errorf("peer %d: send %v recv %v segs %v, want %v", r.Socket.Peer.Port, r.SendRate, r.RecvRate, r.SendSegs, w)
		}
	}
	tests := []struct {
		sort  int
		first uint16
	}{{SortSend, 2}, {SortRecv, 1}, {SortState, 1}, {SortPeer, 1}}
	for _, tc := range tests {
		for m.Sort != tc.sort {
			m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("s")})
		}
		if got := m.Rows[0].Socket.Peer.Port; got != tc.first {
			t.Errorf("sort %s: first row peer %d, want %d", sortNames[tc.sort], got, tc.first)
		}
	}
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("s")})
	if m.Sort != SortSend {
		t.Errorf("s does not cycle back to the first column: %d", m.Sort)
	}
}

func TestKeys(t *testing.T) {
	t0 := time.Unix(1000, 0)
	key := func(s string) tea.Msg {
		switch s {
		case "up":
			return tea.KeyMsg{Type: tea.KeyUp}
		case "down":
			return tea.KeyMsg{Type: tea.KeyDown}
		case "ctrl+c":
			return tea.KeyMsg{Type: tea.KeyCtrlC}
		case " ":
			return tea.KeyMsg{Type: tea.KeySpace, Runes: []rune(" ")}
		}
		return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
	}
	tests := []struct {
		name    string
		keys    []string
		selPeer uint16
		paused  bool
		quit    bool
	}{
		{"first selected", nil, 1, false, false},
		{"j moves down", []string{"j"}, 2, false, false},
		{"down moves down", []string{"down", "down"}, 3, false, false},
		{"stops at the end", []string{"j", "j", "j", "j"}, 3, false, false},
		{"k moves up", []string{"j", "j", "k"}, 2, false, false},
		{"up stops at the top", []string{"up", "up"}, 1, false, false},
		{"space pauses", []string{" "}, 1, true, false},
		{"space again resumes", []string{" ", " "}, 1, false, false},
		{"q quits", []string{"q"}, 1, false, true},
		{"ctrl+c quits", []string{"ctrl+c"}, 1, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(context.Background(), "t", nil)
			m.Update(snap(t0, conn(1, "ESTAB", 0, 0, 1), conn(2, "ESTAB", 0, 0, 1), conn(3, "ESTAB", 0, 0, 1)))
			m.Sort = SortPeer
			m.sortRows()
			var cmd tea.Cmd
			for _, k := range tc.keys {
				_, cmd = m.Update(key(k))
			}
			if got := m.Rows[m.index()].Socket.Peer.Port; got != tc.selPeer {
				t.Errorf("selected peer %d, want %d", got, tc.selPeer)
			}
			if m.Paused != tc.paused {
				t.Errorf("paused %v, want %v", m.Paused, tc.paused)
			}
			quit := cmd != nil && isQuit(cmd())
			if quit != tc.quit {
				t.Errorf("quit %v, want %v", quit, tc.quit)
			}
		})
	}
}

func isQuit(msg tea.Msg) bool { _, ok := msg.(tea.QuitMsg); return ok }

// While paused, the timer does not poll; the selection and the changed
// marks follow the selected connection.
func TestPauseAndChangedFields(t *testing.T) {
	polls := 0
	fetch := func(context.Context) (api.SocketsReply, error) { polls++; return api.SocketsReply{}, nil }
	m := New(context.Background(), "t", fetch)
	t0 := time.Unix(1000, 0)
	m.Update(snap(t0, conn(1, "ESTAB", 100, 200, 1)))
	m.Update(snap(t0.Add(time.Second), conn(1, "ESTAB", 150, 200, 2)))
	if !m.changed["snd_una"] || !m.changed["segs_out"] || m.changed["rcv_nxt"] || m.changed["cc"] {
		t.Errorf("changed %v: want snd_una and segs_out only among those", m.changed)
	}
	m.Update(tea.KeyMsg{Type: tea.KeySpace, Runes: []rune(" ")})
	_, cmd := m.Update(tick{})
	if msg := cmd(); polls != 0 {
		t.Errorf("polled while paused (%T)", msg)
	}
	m.Update(tea.KeyMsg{Type: tea.KeySpace, Runes: []rune(" ")})
	_, cmd = m.Update(tick{})
	if _, ok := cmd().(Snapshot); !ok || polls != 1 {
		t.Errorf("did not poll after resuming (polls %d)", polls)
	}
}

// The view fits an 80x24 terminal, however many connections there are,
// and keeps the selected one on screen.
func TestViewFits80x24(t *testing.T) {
	for _, n := range []int{0, 1, 5, 40} {
		m := New(context.Background(), "lab1", nil)
		m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		var socks []api.Socket
		for i := range n {
			socks = append(socks, conn(uint16(40000+i), "ESTAB", 0, 0, 1))
		}
		m.Update(snap(time.Unix(1, 0), socks...))
		for range n {
			m.Update(tea.KeyMsg{Type: tea.KeyDown})
		}
		lines := strings.Split(m.View(), "\n")
		if len(lines) > 24 {
			t.Errorf("%d connections: %d lines", n, len(lines))
		}
		for i, l := range lines {
			if w := ansi.StringWidth(l); w > 80 {
				t.Errorf("%d connections: line %d is %d wide: %q", n, i, w, ansi.Strip(l))
			}
		}
		if n > 0 && !strings.Contains(m.View(), ":"+strconv.Itoa(40000+n-1)) {
			t.Errorf("%d connections: the selected (last) one is not on screen", n)
		}
	}
}
