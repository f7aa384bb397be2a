package drill

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// tokKind is the kind of a lexical token of the script language.
type tokKind int

const (
	tEOF tokKind = iota
	tOption
	tFloat
	tInt
	tHex
	tWord
	tString
	tBackquoted
	tCode
	tIPv4
	tIPv6
	tEllipsis
	tPunct // one character: < > ( ) [ ] { } , : . + * ~ = | - etc.
)

func (k tokKind) String() string {
	return [...]string{"end of file", "option", "number", "integer", "hex integer", "word", "string",
		"command", "code", "IPv4 address", "IPv6 address", "...", "character"}[k]
}

// token is one token with the line it starts on.
type token struct {
	kind tokKind
	text string // the token as written (strings and commands without their quotes)
	line int
	f    float64
	i    int64
}

func (t token) is(kind tokKind, text string) bool { return t.kind == kind && t.text == text }

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tString:
		return strconv.Quote(t.text)
	case tBackquoted:
		return "`" + t.text + "`"
	}
	return t.text
}

// The lexical rules, as in packetdrill's scanner: at each position the
// longest match wins, and among matches of equal length the rule listed
// first.
var (
	seg      = `[0-9a-fA-F]{1,4}`
	v4       = `[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+`
	ipv6Alts = []string{
		`::`,
		`(` + seg + `:){7}` + seg,
		`(` + seg + `:){1,7}:`,
		`(` + seg + `:){1,6}:` + seg,
		`(` + seg + `:){1,5}(:` + seg + `){1,2}`,
		`(` + seg + `:){1,4}(:` + seg + `){1,3}`,
		`(` + seg + `:){1,3}(:` + seg + `){1,4}`,
		`(` + seg + `:){1,2}(:` + seg + `){1,5}`,
		seg + `:((:` + seg + `){1,6})`,
		`:(:` + seg + `){1,7}`,
		`::ffff:` + v4,
		`::ffff:(0){1,4}:` + v4,
		`(` + seg + `:){1,4}:` + v4,
	}
	lexRules = []struct {
		re   *regexp.Regexp
		kind tokKind
	}{
		{regexp.MustCompile(`^\.\.\.`), tEllipsis},
		{regexp.MustCompile(`^--[a-zA-Z0-9_]+`), tOption},
		{regexp.MustCompile(`^-?[0-9]*[.][0-9]+`), tFloat},
		{regexp.MustCompile(`^-?[0-9]+`), tInt},
		{regexp.MustCompile(`^0x[0-9a-fA-F]+`), tHex},
		{regexp.MustCompile(`^[a-zA-Z0-9_]+`), tWord},
		{regexp.MustCompile(`^"(\\.|[^"\\])*"`), tString},
		{regexp.MustCompile("^`(\\\\.|[^`\\\\])*`"), tBackquoted},
		{regexp.MustCompile(`^%\{([^}]|\}[^%])*\}%`), tCode},
		{regexp.MustCompile(`^` + v4), tIPv4},
		{regexp.MustCompile(`^(` + strings.Join(ipv6Alts, "|") + `)`), tIPv6},
	}
)

func init() {
	// flex takes the longest match; Go's alternation takes the first.
	for _, r := range lexRules {
		r.re.Longest()
	}
}

// lex splits a script into tokens, dropping white space and C and C++
// comments.
func lex(src string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			i++
			continue
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			i += j
			continue
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("line %d: unterminated /* comment", line)
			}
			line += strings.Count(src[i:i+2+j+2], "\n")
			i += 2 + j + 2
			continue
		}
		best, kind := 0, tPunct
		for _, r := range lexRules {
			if m := r.re.FindString(src[i:]); len(m) > best {
				best, kind = len(m), r.kind
			}
		}
		if best == 0 {
			best = 1 // any other character stands for itself
		}
		text := src[i : i+best]
		t := token{kind: kind, text: text, line: line}
		switch kind {
		case tFloat:
			t.f, _ = strconv.ParseFloat(text, 64)
		case tInt:
			v, err := strconv.ParseInt(text, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: integer %s out of range", line, text)
			}
			t.i = v
		case tHex:
			v, err := strconv.ParseUint(text[2:], 16, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: hex integer %s out of range", line, text)
			}
			t.i = int64(v)
		case tString, tBackquoted:
			t.text = text[1 : len(text)-1]
		case tCode:
			t.text = strings.Trim(text[2:len(text)-2], " \t")
		}
		line += strings.Count(text, "\n")
		toks = append(toks, t)
		i += best
	}
	return append(toks, token{kind: tEOF, line: line}), nil
}
