//go:build !linux

package socket

import (
	"errors"
	"syscall"
)

const pollSupported = false

// poller is not available here: every socket has a reader goroutine.
type poller struct{}

func newPoller() (*poller, error)          { return nil, errors.New("socket: no epoll on this system") }
func (p *poller) add(c *Conn) error        { return errors.New("socket: no poller") }
func (p *poller) forget(c *Conn)           {}
func (p *poller) run(dispatch func(*Conn)) {}
func (p *poller) close()                   {}

func readNonblock(raw syscall.RawConn, b []byte) (int, error) {
	return 0, errors.New("socket: no non-blocking reads on this system")
}
