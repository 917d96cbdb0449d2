//go:build !linux

package h3

import "net"

// groState is empty where UDP_GRO is not used (it is on Linux): a
// forwardConn reads one packet per system call.
type groState struct{}

func (*forwardConn) initGRO() {}

// ReadFrom returns the next packet that is quic-go's, after handing any
// forwarded packets before it to their tunnels.
func (c *forwardConn) ReadFrom(p []byte) (int, net.Addr, error) { return c.readOne(p) }
