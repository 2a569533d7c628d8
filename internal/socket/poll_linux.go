//go:build linux

package socket

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const pollSupported = true

// wakeID is the epoll data of the poller's own eventfd.
const wakeID = ^uint64(0)

// poller watches idle sockets with one epoll set and one goroutine. Each
// socket is registered one-shot: when it becomes readable it is disarmed
// and handed to a reader goroutine, which re-arms it when it has read all
// there was.
type poller struct {
	epfd, evfd int
	done       chan struct{}

	mu     sync.Mutex // guards conns, closed
	conns  map[uint64]*Conn
	closed bool
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("socket: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("socket: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	putID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("socket: epoll_ctl: %w", err)
	}
	return &poller{epfd: epfd, evfd: evfd, done: make(chan struct{}), conns: make(map[uint64]*Conn)}, nil
}

func putID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func getID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// ctl runs epoll_ctl on c's descriptor while holding a reference to it, so
// the number cannot be reused by another connection meanwhile.
func (p *poller) ctl(c *Conn, op int) error {
	if c.raw == nil {
		return errors.New("socket: connection has no file descriptor")
	}
	var cerr error
	err := c.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: armEvents}
		putID(&ev, c.id)
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// add registers c, armed.
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

// rearm arms c again after its reader has drained it.
func (p *poller) rearm(c *Conn) error { return p.ctl(c, unix.EPOLL_CTL_MOD) }

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
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			id := getID(&events[i])
			if id == wakeID {
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c != nil {
				dispatch(c)
			}
		}
	}
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
	var one [8]byte
	one[0] = 1
	unix.Write(p.evfd, one[:])
	<-p.done
	unix.Close(p.epfd)
	unix.Close(p.evfd)
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
