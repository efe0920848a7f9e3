// Package vicitest is a fake charon for tests of the vici adapter: a VICI
// server on a unix socket speaking the real packet framing
// (strongswan src/libcharon/plugins/vici/README.md), plus an ordered message
// tree with a JSON form used to store messages recorded from real charon.
package vicitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	govici "github.com/strongswan/govici/vici"
)

// ItemKind is the kind of one message element.
type ItemKind uint8

const (
	KindValue ItemKind = iota
	KindList
	KindSection
)

func (k ItemKind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindList:
		return "list"
	case KindSection:
		return "section"
	}
	return fmt.Sprintf("item-kind(%d)", uint8(k))
}

// Item is one keyed element of a message.
type Item struct {
	Key     string
	Kind    ItemKind
	Value   string
	List    []string
	Section *Msg
}

// Msg is a VICI message: an ordered list of keyed elements.
type Msg struct {
	Items []Item
}

// M builds a message from alternating keys and values; a value is a string,
// a []string or a *Msg. It panics on anything else (test literals only).
func M(kv ...any) *Msg {
	if len(kv)%2 != 0 {
		panic("vicitest: M needs key/value pairs")
	}
	m := &Msg{}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		switch v := kv[i+1].(type) {
		case string:
			m.Items = append(m.Items, Item{Key: k, Kind: KindValue, Value: v})
		case []string:
			m.Items = append(m.Items, Item{Key: k, Kind: KindList, List: v})
		case *Msg:
			m.Items = append(m.Items, Item{Key: k, Kind: KindSection, Section: v})
		default:
			panic(fmt.Sprintf("vicitest: M: unsupported value %T", v))
		}
	}
	return m
}

// Get returns the element with key k.
func (m *Msg) Get(k string) (Item, bool) {
	for _, it := range m.Items {
		if it.Key == k {
			return it, true
		}
	}
	return Item{}, false
}

// Set replaces or appends a string value.
func (m *Msg) Set(k, v string) {
	for i := range m.Items {
		if m.Items[i].Key == k {
			m.Items[i] = Item{Key: k, Kind: KindValue, Value: v}
			return
		}
	}
	m.Items = append(m.Items, Item{Key: k, Kind: KindValue, Value: v})
}

// Clone returns a deep copy.
func (m *Msg) Clone() *Msg {
	if m == nil {
		return nil
	}
	c := &Msg{Items: make([]Item, len(m.Items))}
	for i, it := range m.Items {
		c.Items[i] = it
		if it.List != nil {
			c.Items[i].List = append([]string(nil), it.List...)
		}
		c.Items[i].Section = it.Section.Clone()
	}
	return c
}

// jsonItem is the stored form of an Item: exactly one of V, L, S is set.
type jsonItem struct {
	K string    `json:"k"`
	V *string   `json:"v,omitempty"`
	L *[]string `json:"l,omitempty"`
	S *Msg      `json:"s,omitempty"`
}

// MarshalJSON encodes the message as an ordered array of items.
func (m *Msg) MarshalJSON() ([]byte, error) {
	out := make([]jsonItem, 0, len(m.Items))
	for _, it := range m.Items {
		ji := jsonItem{K: it.Key}
		switch it.Kind {
		case KindValue:
			v := it.Value
			ji.V = &v
		case KindList:
			l := it.List
			if l == nil {
				l = []string{}
			}
			ji.L = &l
		case KindSection:
			s := it.Section
			if s == nil {
				s = &Msg{}
			}
			ji.S = s
		}
		out = append(out, ji)
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes the form written by MarshalJSON.
func (m *Msg) UnmarshalJSON(b []byte) error {
	var in []jsonItem
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	m.Items = m.Items[:0]
	for _, ji := range in {
		switch {
		case ji.V != nil:
			m.Items = append(m.Items, Item{Key: ji.K, Kind: KindValue, Value: *ji.V})
		case ji.L != nil:
			m.Items = append(m.Items, Item{Key: ji.K, Kind: KindList, List: *ji.L})
		case ji.S != nil:
			m.Items = append(m.Items, Item{Key: ji.K, Kind: KindSection, Section: ji.S})
		default:
			return fmt.Errorf("vicitest: item %q has no value", ji.K)
		}
	}
	return nil
}

// FromGovici converts a govici message (as received) into a Msg.
func FromGovici(gm *govici.Message) *Msg {
	m := &Msg{}
	for _, k := range gm.Keys() {
		switch v := gm.Get(k).(type) {
		case string:
			m.Items = append(m.Items, Item{Key: k, Kind: KindValue, Value: v})
		case []string:
			m.Items = append(m.Items, Item{Key: k, Kind: KindList, List: append([]string(nil), v...)})
		case *govici.Message:
			m.Items = append(m.Items, Item{Key: k, Kind: KindSection, Section: FromGovici(v)})
		}
	}
	return m
}

// Govici builds the govici message with the same content. Duplicate keys keep
// the last value at the first position (as govici's decoder does).
func (m *Msg) Govici() *govici.Message {
	gm := govici.NewMessage()
	for _, it := range m.Items {
		var err error
		switch it.Kind {
		case KindValue:
			err = gm.Set(it.Key, it.Value)
		case KindList:
			err = gm.Set(it.Key, append([]string{}, it.List...))
		case KindSection:
			sec := it.Section
			if sec == nil {
				sec = &Msg{}
			}
			err = gm.Set(it.Key, sec.Govici())
		}
		if err != nil {
			panic(fmt.Sprintf("vicitest: govici set %q: %v", it.Key, err))
		}
	}
	return gm
}

// Element types of the VICI message encoding.
const (
	elSectionStart = 1
	elSectionEnd   = 2
	elKeyValue     = 3
	elListStart    = 4
	elListItem     = 5
	elListEnd      = 6
)

// Packet types of the VICI packet layer.
const (
	PktCmdRequest      = 0
	PktCmdResponse     = 1
	PktCmdUnknown      = 2
	PktEventRegister   = 3
	PktEventUnregister = 4
	PktEventConfirm    = 5
	PktEventUnknown    = 6
	PktEvent           = 7
)

// maxDepth bounds section nesting when decoding untrusted input.
const maxDepth = 64

// ErrMalformed is returned for any malformed encoding.
var ErrMalformed = errors.New("vicitest: malformed message")

// Encode appends the VICI element encoding of m to b.
func (m *Msg) Encode(b []byte) ([]byte, error) {
	var err error
	for _, it := range m.Items {
		if len(it.Key) > 255 {
			return nil, fmt.Errorf("vicitest: encode: key %q too long", it.Key[:16])
		}
		switch it.Kind {
		case KindValue:
			if len(it.Value) > 0xffff {
				return nil, fmt.Errorf("vicitest: encode: value of %q too long", it.Key)
			}
			b = append(b, elKeyValue, byte(len(it.Key)))
			b = append(b, it.Key...)
			b = append(b, byte(len(it.Value)>>8), byte(len(it.Value)))
			b = append(b, it.Value...)
		case KindList:
			b = append(b, elListStart, byte(len(it.Key)))
			b = append(b, it.Key...)
			for _, v := range it.List {
				if len(v) > 0xffff {
					return nil, fmt.Errorf("vicitest: encode: list item of %q too long", it.Key)
				}
				b = append(b, elListItem, byte(len(v)>>8), byte(len(v)))
				b = append(b, v...)
			}
			b = append(b, elListEnd)
		case KindSection:
			b = append(b, elSectionStart, byte(len(it.Key)))
			b = append(b, it.Key...)
			if it.Section != nil {
				if b, err = it.Section.Encode(b); err != nil {
					return nil, err
				}
			}
			b = append(b, elSectionEnd)
		}
	}
	return b, nil
}

// Decode parses a VICI element encoding.
func Decode(b []byte) (*Msg, error) {
	d := decoder{b: b}
	m, err := d.section(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(d.b) {
		return nil, fmt.Errorf("%w: unbalanced section end at %d", ErrMalformed, d.i)
	}
	return m, nil
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) u8() (int, error) {
	if d.i >= len(d.b) {
		return 0, fmt.Errorf("%w: truncated at %d", ErrMalformed, d.i)
	}
	v := int(d.b[d.i])
	d.i++
	return v, nil
}

func (d *decoder) bytes(n int) (string, error) {
	if n > len(d.b)-d.i {
		return "", fmt.Errorf("%w: truncated at %d", ErrMalformed, d.i)
	}
	s := string(d.b[d.i : d.i+n])
	d.i += n
	return s, nil
}

func (d *decoder) name() (string, error) {
	n, err := d.u8()
	if err != nil {
		return "", err
	}
	return d.bytes(n)
}

func (d *decoder) value() (string, error) {
	hi, err := d.u8()
	if err != nil {
		return "", err
	}
	lo, err := d.u8()
	if err != nil {
		return "", err
	}
	return d.bytes(hi<<8 | lo)
}

// section decodes elements until a SECTION_END (depth > 0) or the end of
// input (depth 0).
func (d *decoder) section(depth int) (*Msg, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested too deep", ErrMalformed)
	}
	m := &Msg{}
	for d.i < len(d.b) {
		t, _ := d.u8()
		switch t {
		case elSectionEnd:
			if depth == 0 {
				return nil, fmt.Errorf("%w: section end at top level", ErrMalformed)
			}
			return m, nil
		case elKeyValue:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			m.Items = append(m.Items, Item{Key: k, Kind: KindValue, Value: v})
		case elListStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			list := []string{}
			for {
				t, err := d.u8()
				if err != nil {
					return nil, err
				}
				if t == elListEnd {
					break
				}
				if t != elListItem {
					return nil, fmt.Errorf("%w: element %d inside list", ErrMalformed, t)
				}
				v, err := d.value()
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			m.Items = append(m.Items, Item{Key: k, Kind: KindList, List: list})
		case elSectionStart:
			k, err := d.name()
			if err != nil {
				return nil, err
			}
			sub, err := d.section(depth + 1)
			if err != nil {
				return nil, err
			}
			m.Items = append(m.Items, Item{Key: k, Kind: KindSection, Section: sub})
		default:
			return nil, fmt.Errorf("%w: unknown element %d", ErrMalformed, t)
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("%w: unterminated section", ErrMalformed)
	}
	return m, nil
}

// Packet is one VICI packet.
type Packet struct {
	Type uint8
	Name string // for named types (request, register, unregister, event)
	Msg  *Msg
}

func named(t uint8) bool {
	return t == PktCmdRequest || t == PktEventRegister || t == PktEventUnregister || t == PktEvent
}

// EncodePacket returns the framed packet (32-bit length prefix included).
func EncodePacket(p Packet) ([]byte, error) {
	b := []byte{0, 0, 0, 0, p.Type}
	if named(p.Type) {
		if len(p.Name) > 255 {
			return nil, errors.New("vicitest: encode: packet name too long")
		}
		b = append(b, byte(len(p.Name)))
		b = append(b, p.Name...)
	}
	if p.Msg != nil {
		var err error
		if b, err = p.Msg.Encode(b); err != nil {
			return nil, err
		}
	}
	n := len(b) - 4
	b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b, nil
}

// DecodePacket parses a packet body (without the length prefix).
func DecodePacket(b []byte) (Packet, error) {
	if len(b) < 1 {
		return Packet{}, fmt.Errorf("%w: empty packet", ErrMalformed)
	}
	p := Packet{Type: b[0]}
	b = b[1:]
	if named(p.Type) {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return Packet{}, fmt.Errorf("%w: truncated packet name", ErrMalformed)
		}
		p.Name = string(b[1 : 1+int(b[0])])
		b = b[1+int(b[0]):]
	}
	m, err := Decode(b)
	if err != nil {
		return Packet{}, err
	}
	p.Msg = m
	return p, nil
}

// Equal reports whether two messages have the same content in the same order.
func Equal(a, b *Msg) bool {
	ea, err1 := a.Encode(nil)
	eb, err2 := b.Encode(nil)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}
