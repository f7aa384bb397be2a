// Package top is ustack top's terminal view: a stack's connections with
// their send and receive rates, and the selected connection's control block
// updating as segments flow. The model polls GET /v1/sockets?info=1 through
// a fetch function, so it can be driven without a terminal in tests.
package top

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/ustack/ustack/control/api"
)

// Interval is how often the view polls the stack.
const Interval = 250 * time.Millisecond

// Fetch returns the stack's sockets with TCP details.
type Fetch func(ctx context.Context) (api.SocketsReply, error)

// Sort columns, cycled by the s key.
const (
	SortSend = iota
	SortRecv
	SortState
	SortPeer
	numSorts
)

var sortNames = [numSorts]string{"send", "recv", "state", "peer"}

// Row is one connection and its rates over the last poll.
type Row struct {
	Key      string // netid local peer: stable across polls
	Socket   api.Socket
	SendRate float64 // bytes acknowledged by the peer per second; -1 unknown
	RecvRate float64 // bytes received per second; -1 unknown
	SendSegs float64 // segments sent per second
	RecvSegs float64 // segments received per second
}

// sample is what rates are computed from.
type sample struct {
	at              time.Time
	sndUna, rcvNxt  uint32
	haveSeq         bool
	segsIn, segsOut uint64
}

// Snapshot is one poll's result, as a message to the model.
type Snapshot struct {
	Reply api.SocketsReply
	At    time.Time
	Err   error
}

type tick struct{}

// Model is the bubbletea model of ustack top.
type Model struct {
	name      string
	fetch     Fetch
	ctx       context.Context
	Rows      []Row
	prev      map[string]sample
	SelKey    string // the selected connection
	Sort      int
	Paused    bool
	Err       error
	fields    []Field         // the selected connection's control block
	fieldsKey string          // whose block fields is
	changed   map[string]bool // its fields that changed at the last poll
	width     int
	height    int
}

// New returns a model for the stack called name.
func New(ctx context.Context, name string, fetch Fetch) *Model {
	return &Model{name: name, fetch: fetch, ctx: ctx, prev: map[string]sample{}, changed: map[string]bool{}, width: 80, height: 24}
}

// Init starts polling.
func (m *Model) Init() tea.Cmd { return m.poll() }

func (m *Model) poll() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, 2*time.Second)
		defer cancel()
		r, err := m.fetch(ctx)
		return Snapshot{Reply: r, At: time.Now(), Err: err}
	}
}

func (m *Model) next() tea.Cmd { return tea.Tick(Interval, func(time.Time) tea.Msg { return tick{} }) }

// Update handles keys, window sizes, poll results and the poll timer.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		case " ":
			m.Paused = !m.Paused
		case "up", "k":
			m.move(-1)
		case "down", "j":
			m.move(1)
		case "s":
			m.Sort = (m.Sort + 1) % numSorts
			m.sortRows()
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tick:
		if m.Paused {
			return m, m.next()
		}
		return m, m.poll()
	case Snapshot:
		m.apply(msg)
		return m, m.next()
	}
	return m, nil
}

// apply takes a poll's result: new rows, rates against the previous poll,
// and the selected connection's fields with those that changed marked.
func (m *Model) apply(s Snapshot) {
	m.Err = s.Err
	if s.Err != nil {
		return
	}
	next := map[string]sample{}
	rows := make([]Row, 0, len(s.Reply.Sockets))
	for _, so := range s.Reply.Sockets {
		if so.Netid != "tcp" || !so.Connected() {
			continue
		}
		r := Row{Key: key(so), Socket: so, SendRate: -1, RecvRate: -1}
		cur := sample{at: s.At}
		if so.TCP != nil {
			cur.segsIn, cur.segsOut = so.TCP.SegsIn, so.TCP.SegsOut
			if cb := so.TCP.ControlBlock; cb != nil {
				cur.sndUna, cur.rcvNxt, cur.haveSeq = cb.SndUna, cb.RcvNxt, true
			}
		}
		if p, ok := m.prev[r.Key]; ok {
			if dt := cur.at.Sub(p.at).Seconds(); dt > 0 {
				if cur.haveSeq && p.haveSeq {
					// Sequence numbers wrap; the difference of two
					// uint32 is right across a wrap.
					r.SendRate = float64(cur.sndUna-p.sndUna) / dt
					r.RecvRate = float64(cur.rcvNxt-p.rcvNxt) / dt
				}
				r.SendSegs = float64(cur.segsOut-p.segsOut) / dt
				r.RecvSegs = float64(cur.segsIn-p.segsIn) / dt
			}
		}
		next[r.Key] = cur
		rows = append(rows, r)
	}
	m.prev = next
	m.Rows = rows
	m.sortRows()
	if m.index() < 0 && len(m.Rows) > 0 {
		m.SelKey = m.Rows[0].Key
	}
	old := map[string]string{}
	for _, f := range m.fields {
		old[f.Name] = f.Value
	}
	oldKey := m.fieldsKey
	m.fields, m.fieldsKey = nil, ""
	if i := m.index(); i >= 0 {
		m.fields = Fields(m.Rows[i].Socket)
		m.fieldsKey = m.Rows[i].Key
	}
	m.changed = map[string]bool{}
	if oldKey == m.fieldsKey {
		for _, f := range m.fields {
			if v, ok := old[f.Name]; ok && v != f.Value {
				m.changed[f.Name] = true
			}
		}
	}
}

func key(s api.Socket) string {
	return fmt.Sprintf("%s %s:%d %s:%d", s.Netid, s.Local.IP, s.Local.Port, s.Peer.IP, s.Peer.Port)
}

func (m *Model) index() int {
	for i, r := range m.Rows {
		if r.Key == m.SelKey {
			return i
		}
	}
	return -1
}

func (m *Model) move(d int) {
	if len(m.Rows) == 0 {
		return
	}
	i := m.index() + d
	i = max(0, min(i, len(m.Rows)-1))
	m.SelKey = m.Rows[i].Key
	// Show the newly selected connection's block at once; nothing is
	// marked changed until the next poll.
	m.fields, m.fieldsKey, m.changed = Fields(m.Rows[i].Socket), m.Rows[i].Key, map[string]bool{}
}

func (m *Model) sortRows() {
	sort.SliceStable(m.Rows, func(i, j int) bool {
		a, b := m.Rows[i], m.Rows[j]
		switch m.Sort {
		case SortSend:
			if a.SendRate != b.SendRate {
				return a.SendRate > b.SendRate
			}
		case SortRecv:
			if a.RecvRate != b.RecvRate {
				return a.RecvRate > b.RecvRate
			}
		case SortState:
			if a.Socket.State != b.Socket.State {
				return a.Socket.State < b.Socket.State
			}
		case SortPeer:
			if a.Socket.Peer.IP != b.Socket.Peer.IP {
				return a.Socket.Peer.IP < b.Socket.Peer.IP
			}
			if a.Socket.Peer.Port != b.Socket.Peer.Port {
				return a.Socket.Peer.Port < b.Socket.Peer.Port
			}
		}
		return a.Key < b.Key
	})
}

// Field is one line of the control block view.
type Field struct{ Name, Value string }

// Fields lists a connection's TCP details and control block by their JSON
// names, in declaration order, so a field added to api.TCPInfo or
// api.ControlBlock shows up here.
func Fields(s api.Socket) []Field {
	fs := []Field{{"state", s.State}, {"recv_q", queueText(s.RecvQ)}, {"send_q", queueText(s.SendQ)}}
	if s.TCP == nil {
		return fs
	}
	fs = appendFields(fs, reflect.ValueOf(*s.TCP))
	if s.TCP.ControlBlock != nil {
		fs = appendFields(fs, reflect.ValueOf(*s.TCP.ControlBlock))
	}
	return fs
}

func appendFields(fs []Field, v reflect.Value) []Field {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fv := v.Field(i)
		if name == "" || name == "-" || fv.Kind() == reflect.Pointer || name == "age_ms" {
			continue
		}
		var s string
		switch fv.Kind() {
		case reflect.Float64:
			s = strconv.FormatFloat(fv.Float(), 'f', -1, 64)
			if len(s) > 8 {
				s = strconv.FormatFloat(fv.Float(), 'f', 3, 64)
			}
		default:
			s = fmt.Sprint(fv.Interface())
		}
		fs = append(fs, Field{name, s})
	}
	return fs
}

func queueText(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

var (
	titleStyle   = lipgloss.NewStyle().Bold(true)
	headStyle    = lipgloss.NewStyle().Underline(true)
	selStyle     = lipgloss.NewStyle().Reverse(true)
	changedStyle = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("11")).Background(lipgloss.Color("4"))
	dimStyle     = lipgloss.NewStyle().Faint(true)
)

// View draws the screen: a title, the connections (as many as fit above
// the control block), and the selected connection's control block in
// columns of fixed width.
func (m *Model) View() string {
	w, h := max(m.width, 40), max(m.height, 10)
	var b strings.Builder
	state := ""
	if m.Paused {
		state = " PAUSED"
	}
	title := fmt.Sprintf("ustack top %s: %d connections, sort %s%s", m.name, len(m.Rows), sortNames[m.Sort], state)
	b.WriteString(titleStyle.Render(clip(title, w)) + "\n")
	if m.Err != nil {
		b.WriteString(clip("error: "+m.Err.Error(), w) + "\n")
	}

	colW := 26
	cols := max(1, w/colW)
	// Title, header, separator and key help take four lines (five with an
	// error); the list gets what the control block leaves, at least three
	// rows. On a terminal too small for the whole control block, it shows
	// the fields that fit, first ones first.
	fixed := 4
	if m.Err != nil {
		fixed++
	}
	fields := m.fields
	detailLines := (len(fields) + cols - 1) / cols
	if room := max(0, h-fixed-3); detailLines > room {
		detailLines = room
		fields = fields[:min(len(fields), room*cols)]
	}
	listRows := max(3, h-fixed-detailLines)
	b.WriteString(headStyle.Render(clip(fmt.Sprintf("%-11s %-21s %-21s %9s %9s", "State", "Local", "Peer", "Send/s", "Recv/s"), w)) + "\n")
	sel := m.index()
	first := 0
	if sel >= listRows {
		first = sel - listRows + 1
	}
	for i := first; i < len(m.Rows) && i < first+listRows; i++ {
		r := m.Rows[i]
		line := clip(fmt.Sprintf("%-11s %-21s %-21s %9s %9s", r.Socket.State, hostPort(r.Socket.Local), hostPort(r.Socket.Peer),
			rate(r.SendRate, r.SendSegs), rate(r.RecvRate, r.RecvSegs)), w)
		if i == sel {
			line = selStyle.Render(fmt.Sprintf("%-*s", w, line))
		}
		b.WriteString(line + "\n")
	}
	for i := len(m.Rows) - first; i < listRows; i++ {
		b.WriteString("\n")
	}
	b.WriteString(dimStyle.Render(clip(strings.Repeat("─", w), w)) + "\n")
	for line := 0; line < detailLines; line++ {
		for c := 0; c < cols; c++ {
			i := c*detailLines + line
			if i >= len(fields) {
				break
			}
			f := fields[i]
			cell := fmt.Sprintf("%-13s %-11s", clip(f.Name, 13), clip(f.Value, 11))
			if m.changed[f.Name] {
				cell = changedStyle.Render(cell)
			}
			b.WriteString(cell)
			if c < cols-1 {
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(dimStyle.Render(clip("space pause  j/k or ↑/↓ select  s sort  q quit", w)))
	return b.String()
}

func hostPort(a api.Addr) string {
	ip := a.IP
	if ip == "" {
		ip = "*"
	}
	if a.V6 {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.Itoa(int(a.Port))
}

// rate prints bytes per second; without control block samples only the
// segment rate is known, printed as seg/s.
func rate(bps, segs float64) string {
	switch {
	case bps < 0 && segs > 0:
		return fmt.Sprintf("%.0fseg/s", segs)
	case bps < 0:
		return "-"
	case bps >= 1<<30:
		return fmt.Sprintf("%.1fGB", bps/(1<<30))
	case bps >= 1<<20:
		return fmt.Sprintf("%.1fMB", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.1fKB", bps/(1<<10))
	}
	return fmt.Sprintf("%.0fB", bps)
}

func clip(s string, w int) string {
	r := []rune(s)
	if len(r) <= w {
		return s
	}
	return string(r[:w])
}
