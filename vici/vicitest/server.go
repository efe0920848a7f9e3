package vicitest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
)

// Named is a named section: a connection or an IKE_SA under its config name.
type Named struct {
	Name string
	Msg  *Msg
}

// Server is a fake charon: it answers version, list-sas, list-conns,
// initiate, terminate and event (un)registration, and emits events on demand.
// It can be stopped and started again on the same socket path to simulate a
// charon restart.
type Server struct {
	path string

	// mu guards the fields below.
	mu        sync.Mutex
	onCommand func(cmd string, req *Msg) (resp *Msg, ok bool)
	onReg     func(event string, registered []string) []Packet
	ln        net.Listener
	clients   map[*client]struct{}
	sas       []Named
	conns     []Named
	commands  map[string]int
	wg        sync.WaitGroup
}

type client struct {
	conn net.Conn
	wmu  sync.Mutex // serialises writes
	// mu guards events.
	mu     sync.Mutex
	events map[string]bool
}

// NewServer creates a stopped server for a socket path.
func NewServer(path string) *Server {
	return &Server{path: path, clients: map[*client]struct{}{}, commands: map[string]int{}}
}

// Path is the socket path.
func (s *Server) Path() string { return s.path }

// Start listens on the socket (removing a stale file first).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("vicitest: already started")
	}
	_ = os.Remove(s.path)
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		return fmt.Errorf("vicitest: listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Stop closes the listener and every client connection, removes the socket
// and waits for all server goroutines.
func (s *Server) Stop() {
	s.mu.Lock()
	ln := s.ln
	s.ln = nil
	if ln != nil {
		_ = ln.Close()
	}
	for c := range s.clients {
		_ = c.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	_ = os.Remove(s.path)
}

// OnCommand sets a hook asked first for every command; ok=false falls back
// to the built-in handlers.
func (s *Server) OnCommand(fn func(cmd string, req *Msg) (resp *Msg, ok bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCommand = fn
}

// OnRegister sets a hook called for each valid event registration before it
// is confirmed; the packets it returns are sent to that client first.
// registered lists the events the client had registered before. charon does
// this when an event is raised between adding a client to the event's list
// and sending the confirmation (vici_dispatcher.c register_event sends the
// confirm after releasing its lock), so a client must cope with events
// arriving ahead of a registration's answer.
func (s *Server) OnRegister(fn func(event string, registered []string) []Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReg = fn
}

// Clients is the number of connected clients.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Commands returns how often a command was received.
func (s *Server) Commands(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[cmd]
}

// SetSAs replaces the IKE_SAs list-sas reports (each Msg is the list_ike
// data of one SA, Name its config name).
func (s *Server) SetSAs(sas []Named) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sas = slices.Clone(sas)
}

// SetConns replaces the connections list-conns reports.
func (s *Server) SetConns(conns []Named) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = slices.Clone(conns)
}

// clientList is a snapshot of the connected clients.
func (s *Server) clientList() []*client {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		cs = append(cs, c)
	}
	return cs
}

// SendRaw writes b as it is to every client (e.g. a hostile header) and
// returns how many it reached.
func (s *Server) SendRaw(b []byte) int {
	cs := s.clientList()
	n := 0
	for _, c := range cs {
		c.wmu.Lock()
		_, err := c.conn.Write(b)
		c.wmu.Unlock()
		if err == nil {
			n++
		}
	}
	return n
}

// Emit sends an event to every client registered for it and returns how many
// clients it reached.
func (s *Server) Emit(name string, m *Msg) int {
	cs := s.clientList()
	n := 0
	for _, c := range cs {
		c.mu.Lock()
		reg := c.events[name]
		c.mu.Unlock()
		if reg && c.send(Packet{Type: PktEvent, Name: name, Msg: m}) == nil {
			n++
		}
	}
	return n
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c := &client{conn: conn, events: map[string]bool{}}
		s.mu.Lock()
		if s.ln != ln { // stopped meanwhile
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (c *client) send(p Packet) error {
	b, err := EncodePacket(p)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.conn.Write(b)
	return err
}

// knownEvents are the event names charon 5.9.8 accepts.
var knownEvents = map[string]bool{
	"log": true, "control-log": true, "list-sa": true, "list-policy": true, "list-conn": true,
	"list-cert": true, "list-authority": true, "ike-updown": true, "ike-rekey": true,
	"ike-update": true, "child-updown": true, "child-rekey": true,
}

func (s *Server) serve(c *client) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
		_ = c.conn.Close()
	}()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 512*1024 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.conn, body); err != nil {
			return
		}
		p, err := DecodePacket(body)
		if err != nil {
			return
		}
		switch p.Type {
		case PktEventRegister, PktEventUnregister:
			if !knownEvents[p.Name] {
				_ = c.send(Packet{Type: PktEventUnknown})
				continue
			}
			c.mu.Lock()
			var before []string
			for e, on := range c.events {
				if on {
					before = append(before, e)
				}
			}
			c.events[p.Name] = p.Type == PktEventRegister
			c.mu.Unlock()
			s.mu.Lock()
			hook := s.onReg
			s.mu.Unlock()
			if hook != nil && p.Type == PktEventRegister {
				slices.Sort(before)
				for _, ev := range hook(p.Name, before) {
					_ = c.send(ev)
				}
			}
			_ = c.send(Packet{Type: PktEventConfirm})
		case PktCmdRequest:
			s.command(c, p.Name, p.Msg)
		}
	}
}

func (s *Server) command(c *client, cmd string, req *Msg) {
	s.mu.Lock()
	s.commands[cmd]++
	hook := s.onCommand
	sas := slices.Clone(s.sas)
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	if hook != nil {
		if resp, ok := hook(cmd, req); ok {
			_ = c.send(Packet{Type: PktCmdResponse, Msg: resp})
			return
		}
	}
	stream := func(event string, items []Named) {
		c.mu.Lock()
		reg := c.events[event]
		c.mu.Unlock()
		if !reg {
			return
		}
		for _, it := range items {
			_ = c.send(Packet{Type: PktEvent, Name: event, Msg: M(it.Name, it.Msg)})
		}
	}
	var resp *Msg
	switch cmd {
	case "version":
		resp = M("daemon", "charon", "version", "5.9.8", "sysname", "Linux", "release", "fake", "machine", "x86_64")
	case "list-sas":
		stream("list-sa", sas)
		resp = M()
	case "list-conns":
		stream("list-conn", conns)
		resp = M()
	case "initiate", "terminate":
		resp = M("success", "yes")
	default:
		_ = c.send(Packet{Type: PktCmdUnknown})
		return
	}
	_ = c.send(Packet{Type: PktCmdResponse, Msg: resp})
}
