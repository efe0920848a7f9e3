package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// swConf is what a strongswan.conf (or swanctl.conf: the same syntax, see
// strongswan.conf(5)) sets: dotted keys ("charon.plugins.kernel-netlink.fwmark")
// to their last value, includes followed the way charon follows them
// (relative to the including file, inside the section they appear in).
type swConf struct {
	values map[string]string
	files  []string // every file read, in order
}

// swConfMaxDepth bounds include nesting (a file including itself), and
// swConfMaxFiles the files read in all (includes of globs fan out).
const (
	swConfMaxDepth = 10
	swConfMaxFiles = 512
)

// loadSwConf reads file (a path inside fsys, without a leading "/") and its
// includes.
func loadSwConf(fsys fs.FS, file string) (*swConf, error) {
	c := &swConf{values: map[string]string{}}
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, err
	}
	if err := c.parse(fsys, file, data, nil, 0); err != nil {
		return nil, err
	}
	return c, nil
}

// get returns the value of key ("" and false when unset).
func (c *swConf) get(key string) (string, bool) {
	v, ok := c.values[key]
	return v, ok
}

// sections lists the direct subsections of prefix that have at least one
// key set (e.g. the connections of swanctl.conf under "connections").
func (c *swConf) sections(prefix string) []string {
	seen := map[string]bool{}
	for k := range c.values {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		if name, _, ok := strings.Cut(rest, "."); ok {
			seen[name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type swParser struct {
	c     *swConf
	fsys  fs.FS
	file  string
	data  []byte
	i     int
	line  int
	depth int
}

func (c *swConf) parse(fsys fs.FS, file string, data []byte, prefix []string, depth int) error {
	if depth > swConfMaxDepth {
		return fmt.Errorf("%s: includes nested deeper than %d", file, swConfMaxDepth)
	}
	if len(c.files) >= swConfMaxFiles {
		return fmt.Errorf("%s: more than %d files included", file, swConfMaxFiles)
	}
	c.files = append(c.files, file)
	p := &swParser{c: c, fsys: fsys, file: file, data: data, line: 1, depth: depth}
	if err := p.body(prefix, false); err != nil {
		return err
	}
	return nil
}

func (p *swParser) errf(format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", p.file, p.line, fmt.Sprintf(format, a...))
}

func (p *swParser) peek() byte {
	if p.i < len(p.data) {
		return p.data[p.i]
	}
	return 0
}

func (p *swParser) eof() bool { return p.i >= len(p.data) }

// skip eats whitespace, newlines and comments.
func (p *swParser) skip() {
	for !p.eof() {
		switch b := p.peek(); {
		case b == '\n':
			p.line++
			p.i++
		case b == ' ' || b == '\t' || b == '\r':
			p.i++
		case b == '#':
			for !p.eof() && p.peek() != '\n' {
				p.i++
			}
		default:
			return
		}
	}
}

// skipBlank eats spaces and tabs only.
func (p *swParser) skipBlank() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t' || p.peek() == '\r') {
		p.i++
	}
}

func isNameByte(b byte) bool {
	switch b {
	case 0, ' ', '\t', '\r', '\n', '#', '{', '}', ':', ',', '=', '"', '.':
		return false
	}
	return true
}

// name reads NAME(.NAME)*.
func (p *swParser) name() []string {
	var parts []string
	for {
		start := p.i
		for !p.eof() && isNameByte(p.peek()) {
			p.i++
		}
		if p.i == start {
			return parts
		}
		parts = append(parts, string(p.data[start:p.i]))
		if p.peek() != '.' {
			return parts
		}
		p.i++
	}
}

// body parses statements until EOF (top level) or the closing brace.
func (p *swParser) body(prefix []string, inSection bool) error {
	for {
		p.skip()
		if p.eof() {
			if inSection {
				return p.errf("missing }")
			}
			return nil
		}
		if p.peek() == '}' {
			if !inSection {
				return p.errf("unexpected }")
			}
			p.i++
			return nil
		}
		if err := p.statement(prefix); err != nil {
			return err
		}
	}
}

func (p *swParser) statement(prefix []string) error {
	if rest := p.data[p.i:]; len(rest) > 8 && string(rest[:7]) == "include" && (rest[7] == ' ' || rest[7] == '\t') {
		j := 7
		for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
			j++
		}
		if j < len(rest) && rest[j] != '=' {
			p.i += j
			return p.include(prefix)
		}
	}
	n := p.name()
	if len(n) == 0 {
		return p.errf("unexpected %q", p.peek())
	}
	p.skip()
	switch p.peek() {
	case ':': // section inheriting from templates: skip the references
		for !p.eof() && p.peek() != '{' {
			if p.peek() == '\n' {
				p.line++
			}
			p.i++
		}
		if p.eof() {
			return p.errf("missing {")
		}
		fallthrough
	case '{':
		p.i++
		return p.body(append(slices.Clone(prefix), n...), true)
	case '=':
		p.i++
		v, err := p.value()
		if err != nil {
			return err
		}
		p.c.values[strings.Join(append(slices.Clone(prefix), n...), ".")] = v
		return nil
	}
	return p.errf("expected =, { or : after %q", strings.Join(n, "."))
}

// value reads the rest of a `key = value` line: a quoted string, or
// everything up to a newline, # or }.
func (p *swParser) value() (string, error) {
	p.skipBlank()
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.i
	for !p.eof() {
		if b := p.peek(); b == '\n' || b == '#' || b == '}' {
			break
		}
		p.i++
	}
	return strings.TrimSpace(string(p.data[start:p.i])), nil
}

// quoted reads a "string" with backslash escapes; it may span lines.
func (p *swParser) quoted() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.i++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.eof() {
				return "", p.errf("unterminated string")
			}
			e := p.peek()
			p.i++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\n':
				p.line++ // line continuation
			default:
				b.WriteByte(e)
			}
		case '\n':
			p.line++
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return "", p.errf("unterminated string")
}

// include reads the pattern (plain or quoted) and parses every matching
// file, in name order, inside the current section. A pattern that matches
// nothing is not an error (Debian's strongswan.d/charon/ may be empty).
func (p *swParser) include(prefix []string) error {
	var pat string
	if p.peek() == '"' {
		s, err := p.quoted()
		if err != nil {
			return err
		}
		pat = s
	} else {
		start := p.i
		for !p.eof() {
			if b := p.peek(); b == '\n' || b == '#' || b == '}' || b == ' ' || b == '\t' || b == '\r' {
				break
			}
			p.i++
		}
		pat = string(p.data[start:p.i])
	}
	if pat == "" {
		return p.errf("include without a file")
	}
	if strings.HasPrefix(pat, "/") {
		pat = strings.TrimPrefix(path.Clean(pat), "/")
	} else {
		pat = path.Join(path.Dir(p.file), pat)
	}
	files, err := fs.Glob(p.fsys, pat)
	if err != nil {
		return p.errf("include %s: %v", pat, err)
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := fs.ReadFile(p.fsys, f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return p.errf("include %s: %v", f, err)
		}
		if err := p.c.parse(p.fsys, f, data, prefix, p.depth+1); err != nil {
			return err
		}
	}
	return nil
}

// swTrue is strongSwan's boolean parsing (settings_value_as_bool).
func swTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "enabled":
		return true
	}
	return false
}
