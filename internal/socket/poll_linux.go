//go:build linux

package socket

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const pollSupported = true

// poller watches idle sockets with one epoll set and one goroutine. Each
// socket is registered edge-triggered: the set reports it whenever bytes
// arrive, and it is handed to a reader (see Hub.dispatch), which reads
// until the socket has nothing more. No system call re-arms it.
//
// The goroutine never blocks in epoll_wait: the epoll set's own descriptor
// (readable when the set has events) is registered with Go's network
// poller, and the goroutine polls the set without waiting, parking in the
// runtime when it is empty. A blocking epoll_wait would hold the
// scheduler's P in a system call until sysmon takes it back (20 µs or
// more, with a thread handoff each time), which with GOMAXPROCS=1 stalls
// every other goroutine meanwhile.
type poller struct {
	epfd int
	file *os.File        // epfd, owned: closing it stops run
	rc   syscall.RawConn // of file
	done chan struct{}

	mu     sync.Mutex // guards conns, closed
	conns  map[uint64]*Conn
	closed bool
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("socket: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("socket: epoll set: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the runtime's
	// network poller.
	f := os.NewFile(uintptr(epfd), "socket-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("socket: epoll set: %w", err)
	}
	return &poller{epfd: epfd, file: f, rc: rc, done: make(chan struct{}), conns: make(map[uint64]*Conn)}, nil
}

func putID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func getID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// ctl runs epoll_ctl on c's descriptor while holding a reference to it and
// to the epoll set, so that neither number can be reused meanwhile. It
// fails once the poller is closed.
func (p *poller) ctl(c *Conn, op int) error {
	if c.raw == nil {
		return errors.New("socket: connection has no file descriptor")
	}
	var cerr, ierr error
	err := p.rc.Control(func(epfd uintptr) {
		ierr = c.raw.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: armEvents}
			putID(&ev, c.id)
			cerr = unix.EpollCtl(int(epfd), op, int(fd), &ev)
		})
	})
	if err != nil {
		return ErrHubClosed
	}
	if ierr != nil {
		return ierr
	}
	return cerr
}

// add registers c.
func (p *poller) add(c *Conn) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrHubClosed
	}
	p.conns[c.id] = c
	p.mu.Unlock()
	if err := p.ctl(c, unix.EPOLL_CTL_ADD); err != nil {
		p.forget(c)
		return err
	}
	return nil
}

// forget drops c (its descriptor leaves the epoll set when it is closed).
func (p *poller) forget(c *Conn) {
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
}

// run waits for readable sockets and passes them to dispatch until close.
func (p *poller) run(dispatch func(*Conn)) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	var ready []*Conn
	for {
		var n int
		var werr error
		err := p.rc.Read(func(epfd uintptr) bool {
			n, werr = unix.EpollWait(int(epfd), events, 0)
			return n != 0 || (werr != nil && werr != unix.EINTR)
		})
		if err != nil && !p.isClosed() {
			// The runtime does not watch the set (it should on Linux): wait
			// in epoll_wait itself, a little at a time so that close is
			// noticed.
			err = p.rc.Control(func(epfd uintptr) { n, werr = unix.EpollWait(int(epfd), events, 50) })
		}
		switch {
		case err != nil:
			return // closed
		case werr == unix.EINTR:
			continue
		case werr != nil:
			return // cannot happen with a valid set; Close tears the sockets down
		}
		ready = ready[:0]
		p.mu.Lock()
		for i := range n {
			if c := p.conns[getID(&events[i])]; c != nil {
				ready = append(ready, c)
			}
		}
		p.mu.Unlock()
		for i, c := range ready {
			dispatch(c)
			ready[i] = nil
		}
	}
}

func (p *poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// close stops run, waits for it and releases the epoll set.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.file.Close() // wakes run, and closes epfd once run let go of it
	<-p.done
}

// readNonblock reads what is waiting on the socket without blocking:
// errWouldBlock if nothing is.
func readNonblock(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), b)
			if rerr != unix.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == unix.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
